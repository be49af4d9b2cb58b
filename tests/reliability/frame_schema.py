"""The chunk frame's schema as protobuf messages, built from a descriptor at import time.

The reference that fedsilo.common.chunking's hand-written frame encoder and parser are
tested against, and a way for tests to write frames the encoder never would.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def _frame_classes() -> tuple[Any, Any]:
    """Build the frame messages in a private descriptor pool (no generated code needed)."""
    file = descriptor_pb2.FileDescriptorProto(name="fedsilo/chunking.proto",
                                              package="fedsilo.chunking", syntax="proto3")
    label, kind = descriptor_pb2.FieldDescriptorProto, descriptor_pb2.FieldDescriptorProto
    chunk = file.message_type.add(name="Chunk")
    for number, (name, type_, repeated) in enumerate([
        ("transfer", kind.TYPE_UINT64, False),   # 1: id of the message the chunk belongs to
        ("index", kind.TYPE_UINT32, False),      # 2: position of this frame
        ("count", kind.TYPE_UINT32, False),      # 3: number of frames (first frame)
        ("head", kind.TYPE_BYTES, False),        # 4: the message without tensor bytes (first)
        ("sizes", kind.TYPE_UINT64, True),       # 5: each tensor's length (first frame)
        ("data", kind.TYPE_BYTES, False),        # 6: the next slice of tensor bytes
    ], start=1):
        chunk.field.add(name=name, number=number, type=type_,
                        label=label.LABEL_REPEATED if repeated else label.LABEL_OPTIONAL)
    frame = file.message_type.add(name="Frame")
    frame.field.add(name="chunk", number=15, type=kind.TYPE_MESSAGE,
                    label=label.LABEL_OPTIONAL, type_name=".fedsilo.chunking.Chunk")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    classes = message_factory.GetMessages([file], pool=pool)
    return classes["fedsilo.chunking.Chunk"], classes["fedsilo.chunking.Frame"]


# The frame's schema as protobuf messages: the reference the hand-written encoder
# (_frame_bytes) and parser (parse_frame) are tested against.
_Chunk, _Frame = _frame_classes()


Chunk, Frame = _frame_classes()

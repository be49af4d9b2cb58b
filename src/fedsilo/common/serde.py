"""Translation between fedsilo's message dataclasses and protobuf messages.

The only module that touches ``fedsilo.proto``. Each message has a matching
``*_to_proto`` / ``*_from_proto`` pair; server and client envelopes have
helpers that go straight to and from wire bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from google.protobuf.message import DecodeError

from fedsilo.common import typing as t
from fedsilo.common import wire
from fedsilo.common.exceptions import ProtocolError
from fedsilo.common.parameter import npy_header_and_data, padded_npy_header, tensor_pieces
from fedsilo.proto import transport_pb2 as pb

ServerMessage = pb.ServerMessage
ClientMessage = pb.ClientMessage

__all__ = [
    "ClientMessage",
    "ServerMessage",
    "client_message_from_bytes",
    "client_message_to_bytes",
    "server_message_from_bytes",
    "server_message_to_bytes",
]

_SINT64_MIN, _SINT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1


# Scalars and maps -----------------------------------------------------------


def scalar_to_proto(value: t.Scalar) -> pb.Scalar:
    """Encode one config or metrics value; bool is checked before int on purpose.

    An int goes as ``sint64``, or as ``uint64`` when it lies in [2**63, 2**64), as Flower
    sends it; anything wider cannot travel in a Scalar.
    """
    if isinstance(value, bool):
        return pb.Scalar(bool=value)
    if isinstance(value, bytes):
        return pb.Scalar(bytes=value)
    if isinstance(value, float):
        return pb.Scalar(double=value)
    if isinstance(value, int):
        if _SINT64_MIN <= value <= _SINT64_MAX:
            return pb.Scalar(sint64=value)
        if _SINT64_MAX < value <= _UINT64_MAX:
            return pb.Scalar(uint64=value)
        raise ProtocolError(f"integer {value} fits neither a signed nor an unsigned 64-bit "
                            "Scalar; send it as a str or float")
    if isinstance(value, str):
        return pb.Scalar(string=value)
    raise ProtocolError(
        f"config and metrics values must be bool, bytes, float, int or str, not "
        f"{type(value).__name__} ({value!r}); convert it, e.g. float(x) for a numpy number"
    )


def scalar_from_proto(message: pb.Scalar) -> t.Scalar:
    """Decode one Scalar (uint64 and sint64 both become int)."""
    kind = message.WhichOneof("scalar")
    if kind is None:
        raise ProtocolError("Scalar without a value")
    value: t.Scalar = getattr(message, kind)
    return value


def _scalar_map_to_proto(values: Mapping[str, t.Scalar]) -> dict[str, pb.Scalar]:
    if not isinstance(values, Mapping):
        raise ProtocolError(f"expected a dict of str -> Scalar, got {type(values).__name__}")
    out = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ProtocolError(f"config and metrics keys must be str, got {key!r}")
        out[key] = scalar_to_proto(value)
    return out


def _scalar_map_from_proto(values: Mapping[str, pb.Scalar]) -> dict[str, t.Scalar]:
    return {key: scalar_from_proto(value) for key, value in values.items()}


# Parameters and status ------------------------------------------------------


def parameters_to_proto(parameters: t.Parameters) -> pb.Parameters:
    tensors = [x if isinstance(x, bytes) else bytes(x) for x in parameters.tensors]
    return pb.Parameters(tensors=tensors, tensor_type=parameters.tensor_type)


def parameters_from_proto(message: pb.Parameters) -> t.Parameters:
    return t.Parameters(tensors=list(message.tensors), tensor_type=message.tensor_type)


def status_to_proto(status: t.Status) -> pb.Status:
    return pb.Status(code=status.code.value, message=status.message)  # type: ignore[arg-type]


def status_from_proto(message: pb.Status) -> t.Status:
    try:
        code = t.Code(message.code)
    except ValueError as exc:
        raise ProtocolError(f"unknown status code {message.code}") from exc
    return t.Status(code=code, message=message.message)


# Server -> client -------------------------------------------------------------

ServerInstruction = (
    t.GetPropertiesIns | t.GetParametersIns | t.FitIns | t.EvaluateIns | t.ReconnectIns
)


def server_message_to_proto(ins: ServerInstruction) -> pb.ServerMessage:
    """Wrap one instruction in the ServerMessage envelope."""
    sm = pb.ServerMessage
    if isinstance(ins, t.FitIns):
        return sm(fit_ins=sm.FitIns(parameters=parameters_to_proto(ins.parameters),
                                    config=_scalar_map_to_proto(ins.config)))
    if isinstance(ins, t.EvaluateIns):
        return sm(evaluate_ins=sm.EvaluateIns(parameters=parameters_to_proto(ins.parameters),
                                              config=_scalar_map_to_proto(ins.config)))
    if isinstance(ins, t.GetParametersIns):
        return sm(get_parameters_ins=sm.GetParametersIns(config=_scalar_map_to_proto(ins.config)))
    if isinstance(ins, t.GetPropertiesIns):
        return sm(get_properties_ins=sm.GetPropertiesIns(config=_scalar_map_to_proto(ins.config)))
    if isinstance(ins, t.ReconnectIns):
        return sm(reconnect_ins=sm.ReconnectIns(seconds=ins.seconds or 0))
    raise ProtocolError(f"not a server instruction: {type(ins).__name__}")


def server_message_to_bytes(ins: ServerInstruction, aligned: bool = True) -> bytes:
    """The serialized ServerMessage; ``aligned=False`` leaves every ``.npy`` header as it is
    (see ``ALIGNMENT``)."""
    if isinstance(ins, t.FitIns | t.EvaluateIns):
        # The model is written straight into the output (fedsilo.common.wire): one copy.
        kind, inner = (4, pb.ServerMessage.FitIns) if isinstance(ins, t.FitIns) \
            else (5, pb.ServerMessage.EvaluateIns)
        rest = inner(config=_scalar_map_to_proto(ins.config)).SerializeToString()
        return _join_aligned(kind, [], 1, ins.parameters, [rest], aligned)
    return server_message_to_proto(ins).SerializeToString()


def server_message_from_proto(message: pb.ServerMessage) -> ServerInstruction:
    """Unwrap the instruction in a ServerMessage."""
    kind = message.WhichOneof("msg")
    if kind == "fit_ins":
        return t.FitIns(parameters=parameters_from_proto(message.fit_ins.parameters),
                        config=_scalar_map_from_proto(message.fit_ins.config))
    if kind == "evaluate_ins":
        return t.EvaluateIns(parameters=parameters_from_proto(message.evaluate_ins.parameters),
                             config=_scalar_map_from_proto(message.evaluate_ins.config))
    if kind == "get_parameters_ins":
        return t.GetParametersIns(config=_scalar_map_from_proto(message.get_parameters_ins.config))
    if kind == "get_properties_ins":
        return t.GetPropertiesIns(config=_scalar_map_from_proto(message.get_properties_ins.config))
    if kind == "reconnect_ins":
        seconds = message.reconnect_ins.seconds
        return t.ReconnectIns(seconds=seconds if seconds > 0 else None)
    raise ProtocolError("ServerMessage holds no known instruction")


def server_message_from_bytes(data: bytes) -> ServerInstruction:
    split = _split(data, _SERVER_CARRIERS)
    if split is None:
        return server_message_from_proto(_parse(pb.ServerMessage, data))
    parameters = _split_parameters(split)
    if split.kind == 4:
        fit = _parse(pb.ServerMessage.FitIns, split.rest)
        return t.FitIns(parameters=parameters, config=_scalar_map_from_proto(fit.config))
    evaluate = _parse(pb.ServerMessage.EvaluateIns, split.rest)
    return t.EvaluateIns(parameters=parameters, config=_scalar_map_from_proto(evaluate.config))


# Client -> server -------------------------------------------------------------

ClientReply = (
    t.GetPropertiesRes | t.GetParametersRes | t.FitRes | t.EvaluateRes | t.DisconnectRes
)
_REASONS = {name: value for name, value in pb.Reason.items()}


def client_message_to_proto(res: ClientReply) -> pb.ClientMessage:
    """Wrap one reply in the ClientMessage envelope."""
    cm = pb.ClientMessage
    if isinstance(res, t.FitRes):
        return cm(fit_res=cm.FitRes(status=status_to_proto(res.status),
                                    parameters=parameters_to_proto(res.parameters),
                                    num_examples=res.num_examples,
                                    metrics=_scalar_map_to_proto(res.metrics)))
    if isinstance(res, t.EvaluateRes):
        return cm(evaluate_res=cm.EvaluateRes(status=status_to_proto(res.status),
                                              loss=res.loss,
                                              num_examples=res.num_examples,
                                              metrics=_scalar_map_to_proto(res.metrics)))
    if isinstance(res, t.GetParametersRes):
        return cm(get_parameters_res=cm.GetParametersRes(
            status=status_to_proto(res.status), parameters=parameters_to_proto(res.parameters)))
    if isinstance(res, t.GetPropertiesRes):
        return cm(get_properties_res=cm.GetPropertiesRes(
            status=status_to_proto(res.status), properties=_scalar_map_to_proto(res.properties)))
    if isinstance(res, t.DisconnectRes):
        return cm(disconnect_res=cm.DisconnectRes(reason=_REASONS.get(res.reason, 0)))
    raise ProtocolError(f"not a client reply: {type(res).__name__}")


def client_message_to_bytes(res: ClientReply, aligned: bool = True) -> bytes:
    """The serialized ClientMessage; ``aligned=False`` leaves every ``.npy`` header as it is
    (see ``ALIGNMENT``)."""
    cm = pb.ClientMessage
    if isinstance(res, t.FitRes):
        head = cm.FitRes(status=status_to_proto(res.status)).SerializeToString()
        tail = cm.FitRes(num_examples=res.num_examples,
                         metrics=_scalar_map_to_proto(res.metrics)).SerializeToString()
        return _join_aligned(4, [head], 2, res.parameters, [tail], aligned)
    if isinstance(res, t.GetParametersRes):
        head = cm.GetParametersRes(status=status_to_proto(res.status)).SerializeToString()
        return _join_aligned(3, [head], 2, res.parameters, [], aligned)
    return client_message_to_proto(res).SerializeToString()


def client_message_from_proto(message: pb.ClientMessage) -> ClientReply:
    """Unwrap the reply in a ClientMessage."""
    kind = message.WhichOneof("msg")
    if kind == "fit_res":
        m: Any = message.fit_res
        return t.FitRes(status=status_from_proto(m.status),
                        parameters=parameters_from_proto(m.parameters),
                        num_examples=m.num_examples,
                        metrics=_scalar_map_from_proto(m.metrics))
    if kind == "evaluate_res":
        m = message.evaluate_res
        return t.EvaluateRes(status=status_from_proto(m.status), loss=m.loss,
                             num_examples=m.num_examples,
                             metrics=_scalar_map_from_proto(m.metrics))
    if kind == "get_parameters_res":
        m = message.get_parameters_res
        return t.GetParametersRes(status=status_from_proto(m.status),
                                  parameters=parameters_from_proto(m.parameters))
    if kind == "get_properties_res":
        m = message.get_properties_res
        return t.GetPropertiesRes(status=status_from_proto(m.status),
                                  properties=_scalar_map_from_proto(m.properties))
    if kind == "disconnect_res":
        return t.DisconnectRes(reason=pb.Reason.Name(message.disconnect_res.reason)
                               if message.disconnect_res.reason in _REASONS.values()
                               else "UNKNOWN")
    raise ProtocolError("ClientMessage holds no known reply")


def client_message_from_bytes(data: bytes) -> ClientReply:
    split = _split(data, _CLIENT_CARRIERS)
    if split is None:
        return client_message_from_proto(_parse(pb.ClientMessage, data))
    parameters = _split_parameters(split)
    if split.kind == 4:
        fit = _parse(pb.ClientMessage.FitRes, split.rest)
        return t.FitRes(status=status_from_proto(fit.status), parameters=parameters,
                        num_examples=fit.num_examples, metrics=_scalar_map_from_proto(fit.metrics))
    got = _parse(pb.ClientMessage.GetParametersRes, split.rest)
    return t.GetParametersRes(status=status_from_proto(got.status), parameters=parameters)


# Messages that carry a model: envelope oneof field -> the inner message's Parameters field.
_SERVER_CARRIERS = {4: 1, 5: 1}  # fit_ins.parameters, evaluate_ins.parameters
_CLIENT_CARRIERS = {3: 2, 4: 2}  # get_parameters_res.parameters, fit_res.parameters


def _split(data: bytes, carriers: dict[int, int]) -> wire.Split | None:
    """The zero-copy split, or None to let protobuf parse (and judge) the bytes."""
    try:
        return wire.split_parameters(data, carriers)
    except ProtocolError:
        return None


ALIGNMENT = 16
"""Where the data of a tensor made from an array (``ArrayParameters``: a NumPyClient's reply)
starts in a message fedsilo writes whole: a multiple of this many bytes from the message's
start. A received message's bytes start at such a multiple, so the arrays read from it are
aligned for every element type, and the server's checks and sums run on them directly instead
of through numpy's buffered copies. Tensors given as bytes are sent as they are, and so are
tensors sent in chunk frames (``fedsilo.common.chunking``), which the receiver places in its
own buffer."""


def _join_aligned(kind: int, before: list[bytes], number: int, parameters: t.Parameters,
                  after: list[bytes], aligned: bool = True) -> bytes:
    """The message with ``parameters`` in field ``number`` of the envelope's field ``kind``
    between ``before`` and ``after``, joined, with the ``.npy`` header of each tensor made
    from an array padded so that its data starts at a multiple of ``ALIGNMENT`` bytes.

    A header's padding moves what follows it and can lengthen the fields' length prefixes, so
    the paddings are worked out again until every tensor is in place (twice for most
    messages; each length prefix can grow only so often), and then kept for the next message
    of the same layout: a client sends the same one every round. Tensors given as bytes are
    written as they are, and a message whose tensors cannot all be placed goes as it is:
    still valid, only unaligned.
    """
    tensors = tensor_pieces(parameters)
    if not aligned:
        return b"".join(_message_pieces(kind, before, number, tensors, parameters.tensor_type,
                                        after))
    split = [npy_header_and_data(pieces) for pieces in tensors]
    layout = (ALIGNMENT, kind, number, parameters.tensor_type, tuple(len(b) for b in before),
              tuple(len(a) for a in after),
              tuple((len(parts[0]), wire.byte_length(parts[1])) if parts is not None
                    else wire.byte_length(pieces)
                    for pieces, parts in zip(tensors, split, strict=True)))
    pads = _PADDINGS.get(layout)
    if pads is not None:
        pieces, _ = _aligned_pieces(kind, before, number, parameters.tensor_type, after,
                                    tensors, split, pads)
        return b"".join(pieces)
    pads = (0,) * len(tensors)
    # Paddings only grow, so each length prefix (the envelope's, the parameters', each
    # tensor's) lengthens at most a few times before every tensor is in place.
    for _ in range(2 * len(tensors) + 6):
        pieces, padded = _aligned_pieces(kind, before, number, parameters.tensor_type, after,
                                         tensors, split, pads)
        # a tensor whose header could not be padded is its own pieces, as they came
        offsets = _offsets_of(pieces, [None if chosen is given else id(chosen[1])
                                       for chosen, given in zip(padded, tensors, strict=True)])
        misses = [0 if offset is None else -offset % ALIGNMENT for offset in offsets]
        if not any(misses):
            if len(_PADDINGS) >= _KEPT_LAYOUTS:
                _PADDINGS.clear()
            _PADDINGS[layout] = pads
            break
        # padding a tensor's header by p more moves every later tensor's data by p as well
        new, moved = list(pads), 0
        for i, offset in enumerate(offsets):
            if offset is not None:
                more = (misses[i] - moved) % ALIGNMENT
                new[i] = pads[i] + more
                moved += more
        pads = tuple(new)
    return b"".join(pieces)


_PADDINGS: dict[tuple[Any, ...], tuple[int, ...]] = {}
_KEPT_LAYOUTS = 256


def _aligned_pieces(kind: int, before: list[bytes], number: int, tensor_type: str,
                    after: list[bytes], tensors: list[list[bytes | memoryview]],
                    split: list[tuple[bytes, list[bytes | memoryview]] | None],
                    pads: tuple[int, ...]
                    ) -> tuple[list[bytes | memoryview], list[list[bytes | memoryview]]]:
    """The message's pieces with each header of ``split`` padded by its ``pads``, and each
    tensor's pieces as written (a tensor left as it is keeps its own list of ``tensors``)."""
    padded: list[list[bytes | memoryview]] = []
    for pieces, parts, pad in zip(tensors, split, pads, strict=True):
        header = None if parts is None else padded_npy_header(parts[0], pad)
        padded.append(pieces if parts is None or header is None else [header, *parts[1]])
    return _message_pieces(kind, before, number, padded, tensor_type, after), padded


def _message_pieces(kind: int, before: list[bytes], number: int,
                    tensors: list[list[bytes | memoryview]], tensor_type: str,
                    after: list[bytes]) -> list[bytes | memoryview]:
    """The pieces of an envelope whose field ``kind`` holds ``before``, the parameters made of
    ``tensors`` in field ``number``, and ``after``."""
    field = wire.encode_parameters(tensors, tensor_type)
    return wire.encode_length_delimited(
        kind, [*before, *wire.encode_length_delimited(number, field), *after])


def _offsets_of(pieces: list[bytes | memoryview], starts: list[int | None]
                ) -> list[int | None]:
    """Where the pieces whose ids are ``starts`` begin once ``pieces`` are joined; they come
    in that order (None stays None)."""
    wanted = [start for start in starts if start is not None]
    found: list[int] = []
    offset = 0
    for piece in pieces:
        if len(found) < len(wanted) and id(piece) == wanted[len(found)]:
            found.append(offset)
        offset += wire.byte_length([piece])
    if len(found) != len(wanted):  # not expected: then no tensor is placed
        return [None] * len(starts)
    places = iter(found)
    return [None if start is None else next(places) for start in starts]


def _split_parameters(split: wire.Split) -> t.Parameters:
    """Received tensors stay views of the message buffer: bytes-like and read-only."""
    return t.Parameters(tensors=cast(list[bytes], split.tensors), tensor_type=split.tensor_type)


def _parse(cls: Any, data: bytes) -> Any:
    try:
        return cls.FromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ProtocolError(f"bytes are not a valid {cls.DESCRIPTOR.name}: {exc}") from exc

"""``GrpcClientProxy``: the round loop's handle on a client connected over gRPC."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fedsilo.common import GRPC_MAX_MESSAGE_LENGTH, chunking, serde
from fedsilo.common.exceptions import ClientFailure, ClientTimeout, InvalidUpdate, ProtocolError
from fedsilo.common.memory import reuse_buffers_up_to
from fedsilo.common.typing import (
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    ReconnectIns,
)
from fedsilo.server.client_proxy import ClientProxy, Instruction
from fedsilo.server.grpc.bridge import NO_LIMIT, InstructionBridge, Outgoing

__all__ = ["DEFAULT_FIT_REPLY_FACTOR", "GrpcClientProxy", "encode_instruction"]

DEFAULT_FIT_REPLY_FACTOR = 2.0  # a fit reply in chunks may be twice the parameters sent


class _EncodedInstructions:
    """Serialize an instruction shared by many clients once, not once per client.

    Keyed by object identity and frame size; entries hold the instruction itself
    so an id is never reused while cached. Strategies build new instructions
    each round.
    """

    def __init__(self, size: int = 4, *, weak: bool = False) -> None:
        self._size = size
        # weak: hold each encoding only while someone else does (lists of frames only)
        self._weak = weak
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, int], tuple[object, Callable[[], Any]]] = \
            OrderedDict()

    def encode(self, ins: serde.ServerInstruction, frame_size: int = 0,
               build: Any = serde.server_message_to_bytes) -> Any:
        """``build(ins)``, computed once per (instruction, frame_size) while it is held."""
        key = (id(ins), frame_size)
        # Built under the lock: the round loop asks for every client at once, and all but
        # the first must wait for that one encoding instead of making their own.
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is ins:
                data = entry[1]()  # None once a weakly held encoding was freed
                if data is not None:
                    self._entries.move_to_end(key)
                    return data
            data = _Frames(build(ins)) if self._weak else build(ins)
            self._entries[key] = (ins, weakref.ref(data) if self._weak else _Held(data))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return data


class _Held:
    """A strong counterpart of ``weakref.ref``: calling it returns what it holds."""

    __slots__ = ("_data",)

    def __init__(self, data: object) -> None:
        self._data = data

    def __call__(self) -> object:
        return self._data


class _Frames(list):  # type: ignore[type-arg]
    """A model's frames: a list that can be referred to weakly."""

    __slots__ = ("__weakref__",)


_ENCODED = _EncodedInstructions(size=2)  # this round's FitIns and EvaluateIns
# Chunked models are as large as the model: held only while a client's stream still has them
# to send, so they are freed once written, not a round later.
_FRAMES = _EncodedInstructions(size=1, weak=True)


def encode_instruction(ins: serde.ServerInstruction) -> bytes:
    """Wire bytes of a ServerMessage carrying ``ins`` (cached for shared instructions)."""
    if isinstance(ins, FitIns | EvaluateIns):
        return _ENCODED.encode(ins)
    return serde.server_message_to_bytes(ins)


_EXPECTED: dict[type, type] = {
    GetPropertiesIns: GetPropertiesRes,
    GetParametersIns: GetParametersRes,
    FitIns: FitRes,
    EvaluateIns: EvaluateRes,
    ReconnectIns: DisconnectRes,
}


class GrpcClientProxy(ClientProxy):
    """Sends each instruction through the client's ``Join`` stream and decodes the reply.

    ``peer_limit`` is the chunk frame size the client announced (None for a
    client that takes no chunks, e.g. Flower's); an instruction over
    ``max_message_length`` goes to such a client as chunks, to any other as a
    failure that names the limit.

    Each instruction also bounds the reply a client may send in chunks (see
    ``reply_limit``), so that the stream refuses an oversized reply at its first
    frame instead of buffering it: ``fit_reply_factor`` times the tensor bytes a
    ``FitIns`` carried.
    """

    def __init__(self, cid: str, bridge: InstructionBridge, *,
                 max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
                 peer_limit: int | None = None,
                 fit_reply_factor: float = DEFAULT_FIT_REPLY_FACTOR) -> None:
        super().__init__(cid)
        self.bridge = bridge
        self.max_message_length = max_message_length
        self.peer_limit = peer_limit
        self.fit_reply_factor = fit_reply_factor

    def reply_limit(self, ins: serde.ServerInstruction) -> int:
        """The most tensor bytes the reply to ``ins`` may carry in chunks.

        A fit reply: ``fit_reply_factor`` times the tensor bytes sent (unbounded here when
        the FitIns carried none: the servicer's transfer limit still applies). Parameters
        asked for with GetParametersIns: unbounded here too. Every other reply carries no
        tensors. A client that did not announce chunks never gets more than the message
        limit.
        """
        if isinstance(ins, FitIns):
            sent = sum(len(x) for x in ins.parameters.tensors)
            limit = int(sent * self.fit_reply_factor) if sent else NO_LIMIT
        elif isinstance(ins, GetParametersIns):
            limit = NO_LIMIT
        else:
            limit = 0
        return limit if self.peer_limit is not None else min(limit, self.max_message_length)

    def _encode(self, ins: serde.ServerInstruction) -> Outgoing:
        parameters = getattr(ins, "parameters", None)
        size = sum(len(x) for x in parameters.tensors) if parameters is not None else 0
        paced = self.peer_limit is not None and size > chunking.PACED_ABOVE
        if size + chunking.FRAME_OVERHEAD < self.max_message_length and not paced:
            data = encode_instruction(ins)
            if len(data) <= self.max_message_length:
                return data

        def frames(ins: serde.ServerInstruction) -> list[bytes]:
            # A large model goes to a fedsilo client in frames: the stream sends one frame
            # at a time, so the server holds one frame per client in gRPC's buffers, not
            # a copy of the whole model per client.
            reuse_buffers_up_to(size)  # see fedsilo.common.memory
            return chunking.encode_frames(
                ins, max_length=self.max_message_length, peer_limit=self.peer_limit,
                what="start_server(grpc_max_message_length=...)",
                paced_above=chunking.PACED_ABOVE)

        try:
            return _FRAMES.encode(ins, self.peer_limit or -1, frames)  # type: ignore[no-any-return]
        except chunking.TooLarge as exc:
            raise ClientFailure(self.cid, f"{type(ins).__name__} not sent: {exc}") from exc

    def _call(self, ins: Instruction, timeout: float | None) -> Any:
        return self._finish(ins, self.bridge.request(self._encode(ins), timeout,
                                                     self.reply_limit(ins)))

    def _finish(self, ins: Instruction, answer: object) -> Any:
        """Decode ``answer`` as the reply ``ins`` expects; its slot is released unless it
        is a fit result."""
        expected = _EXPECTED[type(ins)]
        try:
            reply = self._decode(ins, answer, expected)
        except BaseException:
            self.bridge.release_reply()
            raise
        if expected is not FitRes:  # a fit result is released by the round loop, once folded
            self.bridge.release_reply()
        return reply

    def submit(self, ins: Instruction, notify: Callable[[], None]) -> _PendingGrpcReply:
        """Queue ``ins`` on the client's stream; no thread waits for the reply."""
        ticket = self.bridge.submit(self._encode(ins), notify, self.reply_limit(ins))
        return _PendingGrpcReply(self, ins, ticket)

    def _decode(self, ins: serde.ServerInstruction, answer: object, expected: type) -> Any:
        if isinstance(answer, chunking.TooLarge):
            raise InvalidUpdate(self.cid, f"reply refused: {answer}")
        if isinstance(answer, ProtocolError):
            raise InvalidUpdate(self.cid, f"unreadable reply: {answer}")
        try:
            reply = (serde.client_message_from_bytes(answer) if isinstance(answer, bytes)
                     else answer)
        except ProtocolError as exc:
            raise InvalidUpdate(self.cid, f"unreadable reply: {exc}") from exc
        if not isinstance(reply, expected):
            raise InvalidUpdate(
                self.cid, f"answered {type(ins).__name__} with {type(reply).__name__}")
        return reply

    def release_reply(self) -> None:
        self.bridge.release_reply()

    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | None = None
    ) -> GetPropertiesRes:
        return self._call(ins, timeout)  # type: ignore[no-any-return]

    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | None = None
    ) -> GetParametersRes:
        return self._call(ins, timeout)  # type: ignore[no-any-return]

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None = None) -> FitRes:
        return self._call(ins, timeout)  # type: ignore[no-any-return]

    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | None = None
    ) -> EvaluateRes:
        return self._call(ins, timeout)  # type: ignore[no-any-return]

    def reconnect(
        self, ins: ReconnectIns, timeout: float | None, group_id: int | None = None
    ) -> DisconnectRes:
        try:
            return self._call(ins, timeout)  # type: ignore[no-any-return]
        except ClientTimeout:
            self._farewell(ins)
            raise

    def _farewell(self, ins: ReconnectIns) -> None:
        """The client is still busy with an earlier instruction: it gets the ReconnectIns
        once it answers, while the server drains its streams."""
        self.bridge.close("the federation ended", farewell=encode_instruction(ins))


class _PendingGrpcReply:
    """An instruction on a client's stream whose reply the round loop collects."""

    def __init__(self, proxy: GrpcClientProxy, ins: Instruction, ticket: int) -> None:
        self._proxy = proxy
        self._ins = ins
        self._ticket = ticket

    def result(self) -> Any:
        return self._proxy._finish(self._ins, self._proxy.bridge.collect(self._ticket))

    def cancel(self) -> None:
        self._proxy.bridge.abandon(self._ticket)
        if isinstance(self._ins, ReconnectIns):  # as in ``reconnect`` on a timeout
            self._proxy._farewell(self._ins)

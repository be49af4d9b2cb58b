"""``GrpcClientProxy``: the round loop's handle on a client connected over gRPC."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from fedsilo.common import serde
from fedsilo.common.exceptions import ClientTimeout, InvalidUpdate, ProtocolError
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
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.grpc.bridge import InstructionBridge

__all__ = ["GrpcClientProxy", "encode_instruction"]


class _EncodedInstructions:
    """Serialize an instruction shared by many clients once, not once per client.

    Keyed by object identity; entries hold the instruction itself so an id is
    never reused while cached. Strategies build new instructions each round.
    """

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, tuple[object, bytes]] = OrderedDict()

    def encode(self, ins: serde.ServerInstruction) -> bytes:
        key = id(ins)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is ins:
                self._entries.move_to_end(key)
                return entry[1]
        data = serde.server_message_to_bytes(ins)
        with self._lock:
            self._entries[key] = (ins, data)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return data


_ENCODED = _EncodedInstructions()


def encode_instruction(ins: serde.ServerInstruction) -> bytes:
    """Wire bytes of a ServerMessage carrying ``ins`` (cached for shared instructions)."""
    if isinstance(ins, FitIns | EvaluateIns):
        return _ENCODED.encode(ins)
    return serde.server_message_to_bytes(ins)


class GrpcClientProxy(ClientProxy):
    """Sends each instruction through the client's ``Join`` stream and decodes the reply."""

    def __init__(self, cid: str, bridge: InstructionBridge) -> None:
        super().__init__(cid)
        self.bridge = bridge

    def _call(self, ins: serde.ServerInstruction, expected: type, timeout: float | None) -> Any:
        reply_bytes = self.bridge.request(encode_instruction(ins), timeout)
        try:
            reply = serde.client_message_from_bytes(reply_bytes)
        except ProtocolError as exc:
            raise InvalidUpdate(self.cid, f"unreadable reply: {exc}") from exc
        if not isinstance(reply, expected):
            raise InvalidUpdate(
                self.cid, f"answered {type(ins).__name__} with {type(reply).__name__}")
        return reply

    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | None = None
    ) -> GetPropertiesRes:
        return self._call(ins, GetPropertiesRes, timeout)  # type: ignore[no-any-return]

    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | None = None
    ) -> GetParametersRes:
        return self._call(ins, GetParametersRes, timeout)  # type: ignore[no-any-return]

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None = None) -> FitRes:
        return self._call(ins, FitRes, timeout)  # type: ignore[no-any-return]

    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | None = None
    ) -> EvaluateRes:
        return self._call(ins, EvaluateRes, timeout)  # type: ignore[no-any-return]

    def reconnect(
        self, ins: ReconnectIns, timeout: float | None, group_id: int | None = None
    ) -> DisconnectRes:
        try:
            return self._call(ins, DisconnectRes, timeout)  # type: ignore[no-any-return]
        except ClientTimeout:
            # Still busy with an earlier instruction: it gets the ReconnectIns once
            # it answers, while the server drains its streams.
            self.bridge.close("the federation ended", farewell=encode_instruction(ins))
            raise

"""Translation between fedsilo's message dataclasses and protobuf messages.

The only module that touches ``fedsilo.proto``. Each message has a matching
``*_to_proto`` / ``*_from_proto`` pair; server and client envelopes have
helpers that go straight to and from wire bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.message import DecodeError

from fedsilo.common import typing as t
from fedsilo.common.exceptions import ProtocolError
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


# Scalars and maps -----------------------------------------------------------


def scalar_to_proto(value: t.Scalar) -> pb.Scalar:
    """Encode one config or metrics value; bool is checked before int on purpose."""
    if isinstance(value, bool):
        return pb.Scalar(bool=value)
    if isinstance(value, bytes):
        return pb.Scalar(bytes=value)
    if isinstance(value, float):
        return pb.Scalar(double=value)
    if isinstance(value, int):
        if not _SINT64_MIN <= value <= _SINT64_MAX:
            raise ProtocolError(f"integer {value} does not fit in a signed 64-bit Scalar")
        return pb.Scalar(sint64=value)
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
    return pb.Parameters(tensors=parameters.tensors, tensor_type=parameters.tensor_type)


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


def server_message_to_bytes(ins: ServerInstruction) -> bytes:
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
    return server_message_from_proto(_parse(pb.ServerMessage, data))


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


def client_message_to_bytes(res: ClientReply) -> bytes:
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
    return client_message_from_proto(_parse(pb.ClientMessage, data))


def _parse(cls: Any, data: bytes) -> Any:
    try:
        return cls.FromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ProtocolError(f"bytes are not a valid {cls.DESCRIPTOR.name}: {exc}") from exc

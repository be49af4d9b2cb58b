"""Checks of fedsilo's messages against Flower's, for ``wire_probe.py``.

Each message is built by one side's own serializer, parsed by the other side's generated class
and decoder, and serialized again; the decoded values must be the ones that were encoded.
Messages whose maps hold at most one entry must come back byte for byte. Protobuf leaves the
order of map entries on the wire unspecified (upb orders them by hash), so messages with
larger maps are compared in protobuf's deterministic form instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import flwr
import numpy as np
from flwr.common import serde as flwr_serde
from flwr.proto import transport_pb2 as flwr_pb

import fedsilo
from fedsilo.common import serde as fedsilo_serde
from fedsilo.common import typing as fs

Check = Callable[[], "str | None"]
Table = dict[str, tuple[Any, Any, str, Callable[[Any], Any], Callable[[Any], Any]]]

# A config as Flower's examples send it, and one with every Scalar kind.
CONFIGS: dict[str, dict[str, Any]] = {
    "one entry": {"server_round": 3},
    "every scalar kind": {"server_round": 3, "lr": 0.125, "site": "north", "final": True,
                          "blob": b"\x00\xff", "big": -(2**40)},
}
ARRAYS = [np.arange(6, dtype=np.float64).reshape(3, 2) / 7, np.array([1, -2], dtype=np.int32)]
FEDSILO_PARAMS = fedsilo.common.ndarrays_to_parameters(ARRAYS)
FLWR_PARAMS = flwr.common.ndarrays_to_parameters(ARRAYS)
FEDSILO_OK = fs.Status(fs.Code.OK, "Success")
FLWR_OK = flwr.common.Status(flwr.common.Code.OK, "Success")


def differs(label: str, got: Any, want: Any) -> str | None:
    return None if got == want else f"{label}: got {got!r}, expected {want!r}"


# Server -> client ----------------------------------------------------------------------


def instructions(config: dict[str, Any]) -> Table:
    """name: (fedsilo instruction, flwr instruction, oneof field, flwr encoder, flwr decoder)."""
    return {
        "fit_ins": (fs.FitIns(FEDSILO_PARAMS, config), flwr.common.FitIns(FLWR_PARAMS, config),
                    "fit_ins", flwr_serde.fit_ins_to_proto, flwr_serde.fit_ins_from_proto),
        "evaluate_ins": (fs.EvaluateIns(FEDSILO_PARAMS, config),
                         flwr.common.EvaluateIns(FLWR_PARAMS, config), "evaluate_ins",
                         flwr_serde.evaluate_ins_to_proto, flwr_serde.evaluate_ins_from_proto),
        "get_parameters_ins": (fs.GetParametersIns(config),
                               flwr.common.GetParametersIns(config), "get_parameters_ins",
                               flwr_serde.get_parameters_ins_to_proto,
                               flwr_serde.get_parameters_ins_from_proto),
        "get_properties_ins": (fs.GetPropertiesIns(config),
                               flwr.common.GetPropertiesIns(config), "get_properties_ins",
                               flwr_serde.get_properties_ins_to_proto,
                               flwr_serde.get_properties_ins_from_proto),
    }


RECONNECTS: Table = {
    "reconnect_ins": (fs.ReconnectIns(seconds=7), flwr.common.ReconnectIns(seconds=7),
                      "reconnect_ins", flwr_serde.reconnect_ins_to_proto,
                      lambda m: flwr.common.ReconnectIns(seconds=m.seconds)),
    # The end of a federation: no reconnect (seconds is 0 on the wire).
    "reconnect_ins_final": (fs.ReconnectIns(seconds=None), flwr.common.ReconnectIns(seconds=None),
                            "reconnect_ins", flwr_serde.reconnect_ins_to_proto,
                            lambda m: flwr.common.ReconnectIns(seconds=m.seconds or None)),
}


# Client -> server ----------------------------------------------------------------------


def replies(config: dict[str, Any]) -> Table:
    """name: (fedsilo reply, flwr reply, oneof field, flwr encoder, flwr decoder)."""
    return {
        "fit_res": (fs.FitRes(FEDSILO_OK, FEDSILO_PARAMS, 120, config),
                    flwr.common.FitRes(FLWR_OK, FLWR_PARAMS, 120, config), "fit_res",
                    flwr_serde.fit_res_to_proto, flwr_serde.fit_res_from_proto),
        # 0.375 is exact in the wire's 32-bit float.
        "evaluate_res": (fs.EvaluateRes(FEDSILO_OK, 0.375, 50, config),
                         flwr.common.EvaluateRes(FLWR_OK, 0.375, 50, config), "evaluate_res",
                         flwr_serde.evaluate_res_to_proto, flwr_serde.evaluate_res_from_proto),
        "get_properties_res": (fs.GetPropertiesRes(FEDSILO_OK, config),
                               flwr.common.GetPropertiesRes(FLWR_OK, config),
                               "get_properties_res", flwr_serde.get_properties_res_to_proto,
                               flwr_serde.get_properties_res_from_proto),
    }


MAPLESS_REPLIES: Table = {
    "get_parameters_res": (fs.GetParametersRes(FEDSILO_OK, FEDSILO_PARAMS),
                           flwr.common.GetParametersRes(FLWR_OK, FLWR_PARAMS),
                           "get_parameters_res", flwr_serde.get_parameters_res_to_proto,
                           flwr_serde.get_parameters_res_from_proto),
    # Flower's clients build this one directly from the generated class.
    "disconnect_res": (fs.DisconnectRes(reason="ACK"), "ACK", "disconnect_res",
                       lambda reason: flwr_pb.ClientMessage.DisconnectRes(
                           reason=flwr_pb.Reason.Value(reason)),
                       lambda m: flwr_pb.Reason.Name(m.reason)),
}


@dataclass(frozen=True)
class Envelope:
    """One direction's envelope: flwr's generated class and fedsilo's serializers."""

    flwr: Any
    to_bytes: Callable[[Any], bytes]
    from_bytes: Callable[[bytes], Any]

    def same_bytes(self, label: str, got: bytes, want: bytes, exact: bool) -> str | None:
        """Byte equality; for messages with larger maps, of the deterministic forms."""
        if exact:
            return differs(label, got, want)
        return differs(f"{label} (deterministic form)",
                       self.flwr.FromString(got).SerializeToString(deterministic=True),
                       self.flwr.FromString(want).SerializeToString(deterministic=True))


SERVER = Envelope(flwr_pb.ServerMessage, fedsilo_serde.server_message_to_bytes,
                  fedsilo_serde.server_message_from_bytes)
CLIENT = Envelope(flwr_pb.ClientMessage, fedsilo_serde.client_message_to_bytes,
                  fedsilo_serde.client_message_from_bytes)


def fedsilo_to_flwr(envelope: Envelope, fedsilo_msg: Any, flwr_msg: Any, field: str,
                    decode: Callable[[Any], Any], exact: bool) -> str | None:
    """fedsilo serializes; flwr's class parses, flwr decodes the value and re-serializes."""
    data = envelope.to_bytes(fedsilo_msg)
    message = envelope.flwr.FromString(data)
    return (differs("oneof", message.WhichOneof("msg"), field)
            or differs("value flwr decodes", decode(getattr(message, field)), flwr_msg)
            or envelope.same_bytes("bytes after flwr re-serializes",
                                   message.SerializeToString(), data, exact))


def flwr_to_fedsilo(envelope: Envelope, fedsilo_msg: Any, flwr_msg: Any, field: str,
                    encode: Callable[[Any], Any], exact: bool) -> str | None:
    """flwr serializes; fedsilo decodes the value and re-serializes the same bytes."""
    data = envelope.flwr(**{field: encode(flwr_msg)}).SerializeToString()
    decoded = envelope.from_bytes(data)
    return (differs("value fedsilo decodes", decoded, fedsilo_msg)
            or envelope.same_bytes("bytes after fedsilo re-serializes",
                                   envelope.to_bytes(decoded), data, exact))


def all_checks() -> dict[str, Check]:
    """Every check by name; each returns None when it passes, else what went wrong."""
    cases: list[tuple[str, Envelope, Table, bool]] = [
        ("ServerMessage", SERVER, RECONNECTS, True),
        ("ClientMessage", CLIENT, MAPLESS_REPLIES, True),
    ]
    for label, config in CONFIGS.items():
        exact = len(config) <= 1
        cases.append((f"ServerMessage[{label}]", SERVER, instructions(config), exact))
        cases.append((f"ClientMessage[{label}]", CLIENT, replies(config), exact))
    found: dict[str, Check] = {}
    for kind, envelope, table, exact in cases:
        for name, (fedsilo_msg, flwr_msg, field, encode, decode) in table.items():
            found[f"{kind}.{name}: fedsilo -> flwr"] = partial(
                fedsilo_to_flwr, envelope, fedsilo_msg, flwr_msg, field, decode, exact)
            found[f"{kind}.{name}: flwr -> fedsilo"] = partial(
                flwr_to_fedsilo, envelope, fedsilo_msg, flwr_msg, field, encode, exact)
    return found

"""Turns one server instruction into one client reply."""

from __future__ import annotations

import logging
import traceback

from fedsilo.client.client import Client
from fedsilo.common.serde import ClientReply, ServerInstruction
from fedsilo.common.typing import (
    Code,
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Parameters,
    ReconnectIns,
    Status,
)

log = logging.getLogger("fedsilo.client")

__all__ = ["handle_instruction"]

# The protocol has no generic error code; a failing method answers with the
# NOT_IMPLEMENTED code of that method and its error text, which every server
# (fedsilo's and Flower's) counts as a failure of that client.
_ERROR_CODES = {
    GetPropertiesIns: Code.GET_PROPERTIES_NOT_IMPLEMENTED,
    GetParametersIns: Code.GET_PARAMETERS_NOT_IMPLEMENTED,
    FitIns: Code.FIT_NOT_IMPLEMENTED,
    EvaluateIns: Code.EVALUATE_NOT_IMPLEMENTED,
}


def handle_instruction(client: Client, ins: ServerInstruction) -> ClientReply:
    """Run ``ins`` on ``client``; an exception becomes a reply that carries its text."""
    if isinstance(ins, ReconnectIns):
        return DisconnectRes(reason="RECONNECT" if ins.seconds is not None else "ACK")
    try:
        if isinstance(ins, FitIns):
            return client.fit(ins)
        if isinstance(ins, EvaluateIns):
            return client.evaluate(ins)
        if isinstance(ins, GetParametersIns):
            return client.get_parameters(ins)
        return client.get_properties(ins)
    except Exception as exc:  # a client error must not end the connection
        log.error("client %s raised: %s", type(ins).__name__, traceback.format_exc().rstrip())
        return _error_reply(ins, f"{type(exc).__name__}: {exc}")


def _error_reply(ins: ServerInstruction, message: str) -> ClientReply:
    status = Status(_ERROR_CODES[type(ins)], message)
    empty = Parameters(tensors=[], tensor_type="")
    if isinstance(ins, FitIns):
        return FitRes(status=status, parameters=empty, num_examples=0, metrics={})
    if isinstance(ins, EvaluateIns):
        return EvaluateRes(status=status, loss=0.0, num_examples=0, metrics={})
    if isinstance(ins, GetParametersIns):
        return GetParametersRes(status=status, parameters=empty)
    return GetPropertiesRes(status=status, properties={})

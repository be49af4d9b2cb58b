"""Flower's legacy message types and telemetry names, as fedsilo offers them."""

from __future__ import annotations

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import (
    ClientMessage,
    Code,
    EventType,
    FitIns,
    FitRes,
    ServerMessage,
    Status,
    event,
    ndarrays_to_parameters,
)


def test_messages_hold_one_instruction_or_reply_each() -> None:
    parameters = ndarrays_to_parameters([np.zeros(2)])
    message = ServerMessage(fit_ins=FitIns(parameters, {"lr": 0.1}))
    assert message.fit_ins is not None and message.fit_ins.config == {"lr": 0.1}
    assert message.get_properties_ins is None and message.evaluate_ins is None
    reply = ClientMessage(fit_res=FitRes(Status(Code.OK, ""), parameters, 3, {}))
    assert reply.fit_res is not None and reply.fit_res.num_examples == 3
    assert reply.evaluate_res is None and reply.get_parameters_res is None


def test_event_sends_nothing_and_returns_a_finished_future() -> None:
    future = event(EventType.START_SERVER_ENTER, {"any": "detail"})
    assert future.done() and future.result() == "disabled"
    with pytest.raises(TypeError, match="EventType"):
        event("START_SERVER_ENTER")  # type: ignore[arg-type]


def test_event_types_are_flowers_names() -> None:
    assert EventType.START_CLIENT_ENTER.value == "START_CLIENT_ENTER"
    assert {e.value for e in EventType} >= {
        "PING", "START_CLIENT_ENTER", "START_CLIENT_LEAVE", "START_SERVER_ENTER",
        "START_SERVER_LEAVE", "START_SIMULATION_ENTER", "START_SIMULATION_LEAVE"}


def test_type_aliases_describe_arrays_and_record_values() -> None:
    assert fl.common.NDArrayInt.__args__[1].__args__[0] is np.int_  # type: ignore[attr-defined]
    assert fl.common.NDArrayFloat.__args__[1].__args__[0] is np.float64  # type: ignore[attr-defined]
    assert list[str] in fl.common.Value.__args__  # type: ignore[attr-defined]

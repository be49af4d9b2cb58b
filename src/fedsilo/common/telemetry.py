"""Flower's telemetry names, kept so code that sends events runs; fedsilo sends nothing.

Flower reports anonymous usage events (``event(EventType.START_SERVER_ENTER)``) to its
makers unless ``FLWR_TELEMETRY_ENABLED=0``. fedsilo has no such service: :func:`event`
accepts the same arguments and returns an already finished future, so nothing leaves the
machine and no thread is started.
"""

from __future__ import annotations

from concurrent.futures import Future
from enum import StrEnum
from typing import Any

__all__ = ["EventType", "event"]


class EventType(StrEnum):
    """The event names Flower defines; each member's value is its name."""

    PING = "PING"
    START_CLIENT_ENTER = "START_CLIENT_ENTER"
    START_CLIENT_LEAVE = "START_CLIENT_LEAVE"
    START_SERVER_ENTER = "START_SERVER_ENTER"
    START_SERVER_LEAVE = "START_SERVER_LEAVE"
    START_SIMULATION_ENTER = "START_SIMULATION_ENTER"
    START_SIMULATION_LEAVE = "START_SIMULATION_LEAVE"
    FLWR_SIMULATION_RUN_ENTER = "FLWR_SIMULATION_RUN_ENTER"
    FLWR_SIMULATION_RUN_LEAVE = "FLWR_SIMULATION_RUN_LEAVE"
    FLWR_SERVERAPP_RUN_ENTER = "FLWR_SERVERAPP_RUN_ENTER"
    FLWR_SERVERAPP_RUN_LEAVE = "FLWR_SERVERAPP_RUN_LEAVE"
    FLWR_CLIENTAPP_RUN_ENTER = "FLWR_CLIENTAPP_RUN_ENTER"
    FLWR_CLIENTAPP_RUN_LEAVE = "FLWR_CLIENTAPP_RUN_LEAVE"
    PYTHON_API_RUN_SIMULATION_ENTER = "PYTHON_API_RUN_SIMULATION_ENTER"
    PYTHON_API_RUN_SIMULATION_LEAVE = "PYTHON_API_RUN_SIMULATION_LEAVE"
    RUN_SUPERLINK_ENTER = "RUN_SUPERLINK_ENTER"
    RUN_SUPERLINK_LEAVE = "RUN_SUPERLINK_LEAVE"
    RUN_SUPERNODE_ENTER = "RUN_SUPERNODE_ENTER"
    RUN_SUPERNODE_LEAVE = "RUN_SUPERNODE_LEAVE"


def event(event_type: EventType, event_details: dict[str, Any] | None = None) -> Future[str]:
    """Flower's telemetry call; fedsilo records nothing and returns a finished future.

    Parameters
    ----------
    event_type
        What happened (an :class:`EventType`).
    event_details
        Extra fields Flower would send with it; ignored.
    """
    if not isinstance(event_type, EventType):
        raise TypeError(f"event_type must be an EventType, not {type(event_type).__name__}")
    del event_details
    done: Future[str] = Future()
    done.set_result("disabled")
    return done

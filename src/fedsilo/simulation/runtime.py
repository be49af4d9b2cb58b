"""What runs inside a simulation worker: build the sampled client, run one instruction.

Both backends ship the same :class:`Task` to their workers (a process of the
local pool or a Ray actor) and get back a :class:`Outcome`. The round's
parameters do not travel inside the task: the task carries a
:class:`ParametersHandle`, and a worker loads the parameters behind a handle
once, then reuses them for every client it runs with that handle.
"""

from __future__ import annotations

import logging
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fedsilo.client.client import Client
from fedsilo.client.message_handler import handle_instruction
from fedsilo.client.numpy_client import NumPyClient
from fedsilo.common.serde import ClientReply, ServerInstruction
from fedsilo.common.typing import EvaluateIns, FitIns, Parameters
from fedsilo.simulation.state import ClientStateStore, StatefulClient

log = logging.getLogger("fedsilo.simulation")

__all__ = [
    "ClientFn",
    "ClientRuntime",
    "Outcome",
    "ParametersHandle",
    "Task",
    "with_parameters",
]

ClientFn = Callable[[str], Client | NumPyClient]


def with_parameters(ins: ServerInstruction, parameters: Parameters) -> ServerInstruction:
    """``ins`` with its parameters replaced (instructions without parameters unchanged)."""
    if isinstance(ins, FitIns):
        return replace(ins, parameters=parameters)
    if isinstance(ins, EvaluateIns):
        return replace(ins, parameters=parameters)
    return ins


class ParametersHandle(ABC):
    """Where a worker finds a round's parameters; ``key`` names one published version."""

    key: str
    tensor_type: str

    @abstractmethod
    def load(self) -> list[bytes]:
        """The tensors, read in the worker."""


@dataclass(frozen=True)
class Task:
    """One instruction for one client; the instruction's tensors are behind ``parameters``."""

    cid: str
    instruction: ServerInstruction
    parameters: ParametersHandle | None = None


@dataclass(frozen=True)
class Outcome:
    """The client's reply, or why there is none (``client_fn`` or the state store failed)."""

    reply: ClientReply | None
    error: str = ""


class ClientRuntime:
    """Runs tasks in one worker: caches the latest parameters, loads and saves client state."""

    def __init__(self, client_fn: ClientFn, state_dir: str | Path | None = None) -> None:
        self.client_fn = client_fn
        self.store = ClientStateStore(state_dir) if state_dir is not None else None
        self._key: str | None = None
        self._tensors: list[bytes] = []

    def run(self, task: Task) -> Outcome:
        """Build the client with ``client_fn(cid)``, run the instruction, keep its state."""
        instruction = task.instruction
        if task.parameters is not None:
            parameters = Parameters(self._load(task.parameters), task.parameters.tensor_type)
            instruction = with_parameters(instruction, parameters)
        try:
            user_client: Any = self.client_fn(task.cid)
        except Exception as exc:
            log.error("client_fn(%r) raised: %s", task.cid, traceback.format_exc().rstrip())
            return Outcome(None, f"client_fn({task.cid!r}) raised {type(exc).__name__}: {exc}")
        if not isinstance(user_client, Client | NumPyClient):
            return Outcome(None, f"client_fn({task.cid!r}) returned "
                                 f"{type(user_client).__name__}; return a fedsilo Client or "
                                 "NumPyClient")
        client = user_client.to_client()
        store = self.store if isinstance(user_client, StatefulClient) else None
        stateful: Any = user_client
        if store is not None:
            try:
                state = store.load(task.cid)
                if state is not None:
                    stateful.set_state(state)
            except Exception as exc:
                return Outcome(None, f"loading the client's state failed: "
                                     f"{type(exc).__name__}: {exc}")
        reply = handle_instruction(client, instruction)
        if store is not None:
            try:
                store.save(task.cid, stateful.get_state())
            except Exception as exc:
                return Outcome(None, f"saving the client's state failed: "
                                     f"{type(exc).__name__}: {exc}")
        return Outcome(reply)

    def _load(self, handle: ParametersHandle) -> list[bytes]:
        if handle.key != self._key:
            self._tensors = handle.load()
            self._key = handle.key
        return self._tensors

"""The engine that both backends share: a queue of client tasks and a fixed set of workers.

Each worker (a process or a Ray actor) has a driver thread here that takes the
next task from the queue, hands it to its worker and waits for the outcome, up
to the instruction's timeout. A worker that overruns is killed and replaced; a
worker that dies (``os._exit``, a signal, out of memory) is replaced too. Either
way that client's call fails with the reason and the other tasks go on.

The round's parameters are published once per version through a
:class:`ParameterPublisher`; tasks carry only a handle to them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from abc import ABC, abstractmethod
from typing import TypeVar

from fedsilo.common.exceptions import ClientFailure, ClientReportedError
from fedsilo.common.serde import ClientReply, ServerInstruction
from fedsilo.common.typing import DisconnectRes, Parameters, ReconnectIns
from fedsilo.simulation.proxy import DispatchingClientProxy
from fedsilo.simulation.runtime import Outcome, ParametersHandle, Task, with_parameters

log = logging.getLogger("fedsilo.simulation")

__all__ = [
    "Engine",
    "ParameterPublisher",
    "VirtualClientProxy",
    "WorkerSlot",
    "WorkerStartError",
]

T = TypeVar("T")

DRAIN_S = 10.0  # how long closing waits for running clients before stopping their workers


class WorkerSlot(ABC):
    """One worker and the means to replace it."""

    @abstractmethod
    def run(self, task: Task, timeout: float | None) -> Outcome:
        """Run ``task``; raise a ``ClientFailure`` (after replacing the worker) if it dies
        or overruns ``timeout``."""

    @abstractmethod
    def wait_ready(self) -> None:
        """Block until the worker has loaded ``client_fn``; raise ``WorkerStartError`` if it
        cannot."""

    @abstractmethod
    def close(self) -> None:
        """Stop the worker for good."""


class WorkerStartError(RuntimeError):
    """A worker could not start or load ``client_fn``; the message holds its error."""


class ParameterPublisher(ABC):
    """Puts a version of the parameters where every worker can read it."""

    @abstractmethod
    def publish(self, parameters: Parameters) -> ParametersHandle:
        """A handle to ``parameters``, published now or reused if already published."""

    @abstractmethod
    def release(self, handle: ParametersHandle) -> None:
        """One task using ``handle`` is over."""

    @abstractmethod
    def close(self) -> None:
        """Free whatever is still published."""


class Engine:
    """Runs client tasks on a fixed set of workers; calls block until their outcome."""

    def __init__(self, slots: list[WorkerSlot], publisher: ParameterPublisher) -> None:
        if not slots:
            raise ValueError("the engine needs at least one worker")
        self.slots = slots
        self.publisher = publisher
        Item = tuple[Task, float | None, concurrent.futures.Future[Outcome]]
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._closed = False
        self._drivers = [threading.Thread(target=self._drive, args=(slot,), daemon=True,
                                          name=f"fedsilo-sim-driver-{i}")
                         for i, slot in enumerate(slots)]
        for driver in self._drivers:
            driver.start()

    @property
    def num_workers(self) -> int:
        return len(self.slots)

    def wait_ready(self) -> None:
        """Block until every worker is up: a ``client_fn`` that cannot load fails here, once,
        rather than once per client."""
        for slot in self.slots:
            slot.wait_ready()

    def call(self, cid: str, ins: ServerInstruction, timeout: float | None) -> Outcome:
        """Queue ``ins`` for client ``cid`` and wait for its outcome."""
        if self._closed:
            raise ClientFailure(cid, "the simulation engine is closed")
        handle = None
        parameters = getattr(ins, "parameters", None)
        if isinstance(parameters, Parameters) and parameters.tensors:
            handle = self.publisher.publish(parameters)
            ins = with_parameters(ins, Parameters([], parameters.tensor_type))
        future: concurrent.futures.Future[Outcome] = concurrent.futures.Future()
        self._queue.put((Task(cid, ins, handle), timeout, future))
        return future.result()

    def _drive(self, slot: WorkerSlot) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            task, timeout, future = item
            try:
                future.set_result(slot.run(task, timeout))
            except BaseException as exc:  # handed to the waiting proxy
                future.set_exception(exc)
            finally:
                if task.parameters is not None:
                    self.publisher.release(task.parameters)

    def close(self) -> None:
        """Stop the drivers once queued tasks are done, then the workers."""
        if self._closed:
            return
        self._closed = True
        for _ in self._drivers:
            self._queue.put(None)
        for driver in self._drivers:
            driver.join(DRAIN_S)  # past it, closing the slots ends what still runs
        for slot in self.slots:
            slot.close()
        self.publisher.close()


class VirtualClientProxy(DispatchingClientProxy):
    """A sampled virtual client: each call becomes a task on the engine's workers."""

    def __init__(self, cid: str, engine: Engine) -> None:
        super().__init__(cid)
        self.engine = engine

    def _call(self, ins: ServerInstruction, expected: type[T], timeout: float | None) -> T:
        outcome = self.engine.call(self.cid, ins, timeout)
        if outcome.reply is None:
            raise ClientReportedError(self.cid, outcome.error)
        reply: ClientReply = outcome.reply
        if not isinstance(reply, expected):
            raise ClientFailure(self.cid, f"answered {type(reply).__name__} to "
                                          f"{type(ins).__name__}")
        return reply

    def reconnect(
        self, ins: ReconnectIns, timeout: float | None, group_id: int | None = None
    ) -> DisconnectRes:
        # A virtual client holds no connection: there is nothing to close.
        return DisconnectRes(reason="ACK" if ins.seconds is None else "RECONNECT")

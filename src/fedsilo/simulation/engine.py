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
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
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
    "SlotLost",
    "WorkerSlot",
    "WorkerStartError",
]

T = TypeVar("T")

DRAIN_S = 10.0  # how long closing waits for running clients before stopping their workers
GROW_CHECK_S = 5.0  # how often the engine asks whether the cluster has room for more workers


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


class SlotLost(Exception):
    """Raised by ``WorkerSlot.run`` before it ran the task: the slot's worker is gone for
    good (its node left the cluster) and the task goes to another worker."""


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


_Item = tuple[Task, float | None, "concurrent.futures.Future[Outcome]"]


class Engine:
    """Runs client tasks on a set of workers; calls block until their outcome.

    The set may change while it runs (Ray): a slot whose worker is gone for good raises
    ``SlotLost``, its driver ends and its task goes back to the queue for the others;
    ``grow(current)``, asked at most every ``GROW_CHECK_S`` seconds, returns new slots
    when the cluster has room for more workers.
    """

    def __init__(self, slots: list[WorkerSlot], publisher: ParameterPublisher,
                 grow: Callable[[int], list[WorkerSlot]] | None = None) -> None:
        if not slots:
            raise ValueError("the engine needs at least one worker")
        self.slots: list[WorkerSlot] = []
        self.publisher = publisher
        self._grow = grow
        self._grown_at = time.monotonic()
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False
        self._drivers: list[threading.Thread] = []
        for slot in slots:
            self._add(slot)

    def _add(self, slot: WorkerSlot) -> None:
        driver = threading.Thread(target=self._drive, args=(slot,), daemon=True,
                                  name=f"fedsilo-sim-driver-{len(self._drivers)}")
        with self._lock:
            self.slots.append(slot)
            self._drivers.append(driver)
        driver.start()

    @property
    def num_workers(self) -> int:
        with self._lock:
            return len(self.slots)

    def _maybe_grow(self) -> None:
        if self._grow is None or time.monotonic() - self._grown_at < GROW_CHECK_S:
            return
        self._grown_at = time.monotonic()
        for slot in self._grow(self.num_workers):
            self._add(slot)

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
        self._maybe_grow()
        if self.num_workers == 0:
            raise ClientFailure(cid, "no simulation worker is left (every one was lost)")
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
            except SlotLost as exc:
                self._retire(slot, item, str(exc))
                return
            except BaseException as exc:  # handed to the waiting proxy
                future.set_exception(exc)
            if task.parameters is not None:
                self.publisher.release(task.parameters)

    def _retire(self, slot: WorkerSlot, item: _Item, reason: str) -> None:
        """The slot's worker is gone for good: its task goes to the others, unless it was
        the last worker (then the task fails with the reason)."""
        with self._lock:
            if slot in self.slots:
                self.slots.remove(slot)
            left = len(self.slots)
        slot.close()
        task, _, future = item
        log.warning("a worker left the simulation (%s); %d remain", reason, left)
        if left:
            self._queue.put(item)
            return
        waiting: _Item | None = item
        while waiting is not None:  # nobody is left to take what waits: fail it all
            task, _, future = waiting
            future.set_exception(ClientFailure(task.cid, f"no worker is left to run it "
                                                         f"({reason})"))
            if task.parameters is not None:
                self.publisher.release(task.parameters)
            try:
                waiting = self._queue.get_nowait()
            except queue.Empty:
                waiting = None

    def close(self) -> None:
        """Stop the drivers once queued tasks are done, then the workers."""
        if self._closed:
            return
        self._closed = True
        for _ in self._drivers:
            self._queue.put(None)
        for driver in self._drivers:
            driver.join(DRAIN_S)  # past it, closing the slots ends what still runs
        for slot in list(self.slots):
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

"""The local backend: a pool of worker processes on this machine.

Workers are started with ``spawn`` (a fresh interpreter: no locks or threads
inherited from the server) and receive ``client_fn`` once, pickled (with
``cloudpickle`` when plain pickle cannot: closures, lambdas). The round's
parameters go into one ``multiprocessing.shared_memory`` block per version;
each worker copies them out once and then serves every client it runs with
them. A result's tensors come back through the worker's shared-memory outbox
(:mod:`.shared`) as soon as the client ends; the pipe carries only the rest.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from fedsilo.common.exceptions import ClientDisconnected, ClientFailure, ClientTimeout
from fedsilo.common.serde import ClientReply
from fedsilo.common.typing import FitRes, GetParametersRes, Parameters
from fedsilo.simulation.engine import Engine, WorkerSlot, WorkerStartError
from fedsilo.simulation.runtime import ClientFn, ClientRuntime, Outcome, Task
from fedsilo.simulation.shared import Bounds, Outbox, OutboxWriter, SharedMemoryPublisher

log = logging.getLogger("fedsilo.simulation")

__all__ = ["ProcessSlot", "default_num_workers", "local_engine"]

WORKER_START_S = 120.0  # importing numpy, fedsilo and the user's modules in a fresh process


def default_num_workers(num_cpus: float = 1.0) -> int:
    """One worker per core this process may run on, or per ``num_cpus`` cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, int((cores or 1) // max(num_cpus, 1e-9)))


def local_engine(
    client_fn: ClientFn, *, num_workers: int, state_dir: str | Path | None = None
) -> Engine:
    """Start ``num_workers`` worker processes and the engine that feeds them."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    payload = _pickle_client_fn(client_fn)
    context = multiprocessing.get_context("spawn")
    slots: list[WorkerSlot] = [
        ProcessSlot(context, payload, None if state_dir is None else str(state_dir), i)
        for i in range(num_workers)]
    return Engine(slots, SharedMemoryPublisher())


def _pickle_client_fn(client_fn: ClientFn) -> bytes:
    try:
        return pickle.dumps(client_fn)
    except Exception as plain_error:
        try:
            import cloudpickle
        except ImportError:
            raise TypeError(
                f"client_fn cannot be pickled for the worker processes ({plain_error}); define "
                "it at module level (or as functools.partial of one), or install cloudpickle "
                "to send closures and lambdas") from plain_error
        return bytes(cloudpickle.dumps(client_fn))


# Worker processes -----------------------------------------------------------------------


class ProcessSlot(WorkerSlot):
    """One worker process; replaced by a fresh one when it dies or overruns."""

    def __init__(self, context: Any, payload: bytes, state_dir: str | None, index: int) -> None:
        self._context = context
        self._payload = payload
        self._state_dir = state_dir
        self._index = index
        self._outbox = Outbox()
        self._closed = False
        self._spawn()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _spawn(self) -> None:
        parent_end, child_end = self._context.Pipe(duplex=True)
        self._process = self._context.Process(
            target=_worker_main, args=(child_end, self._payload, self._state_dir),
            name=f"fedsilo-sim-worker-{self._index}", daemon=True)
        self._process.start()
        child_end.close()
        self._conn: multiprocessing.connection.Connection = parent_end
        self._ready = False

    def _replace(self) -> None:
        self._conn.close()
        if self._closed:  # the engine is shutting down: no fresh worker
            self._process.kill()
            self._process.join(5)
            return
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._outbox.close()  # the dead worker may have left it half written
        self._spawn()

    def wait_ready(self) -> None:
        """The worker's first message says whether it could load ``client_fn``."""
        if self._ready:
            return
        if not self._conn.poll(WORKER_START_S):
            self._replace()
            raise WorkerStartError(f"a worker process did not start within {WORKER_START_S} s")
        try:
            error = self._conn.recv()
        except (EOFError, OSError):
            code = self._exit_code()
            self._replace()
            raise WorkerStartError(f"a worker process died while starting ({code})") from None
        if error:
            self._replace()
            raise WorkerStartError(f"a worker process could not load client_fn: {error}")
        self._ready = True

    def run(self, task: Task, timeout: float | None) -> Outcome:
        kind = type(task.instruction).__name__.removesuffix("Ins").lower()
        if not self._process.is_alive():
            self._replace()  # died while idle: not this client's fault
        try:
            self.wait_ready()
        except WorkerStartError as exc:
            raise ClientFailure(task.cid, str(exc)) from exc
        self._conn.send((task, self._outbox.name))
        if not self._conn.poll(timeout):
            self._replace()
            raise ClientTimeout(task.cid, f"{kind} gave no reply within {timeout:g} s; its "
                                          "worker process was stopped and replaced")
        try:
            outcome, bounds, size = self._conn.recv()
        except (EOFError, OSError):
            code = self._exit_code()
            self._replace()
            raise ClientDisconnected(task.cid, f"its worker process died ({code}) during "
                                               f"{kind}; a fresh worker replaces it") from None
        if bounds is not None:
            assert outcome.reply is not None
            outcome = Outcome(_with_tensors(outcome.reply, self._outbox.read(bounds)))
        self._outbox.ensure(size)  # the next result of this size goes through shared memory
        return outcome

    def _exit_code(self) -> str:
        self._process.join(5)
        code = self._process.exitcode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def close(self) -> None:
        self._closed = True
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()
        self._outbox.close()


def _worker_main(conn: multiprocessing.connection.Connection, payload: bytes,
                 state_dir: str | None) -> None:
    """A worker's life: load ``client_fn``, then run tasks until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    try:
        runtime = ClientRuntime(pickle.loads(payload), state_dir)
    except Exception as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    conn.send("")
    outbox = OutboxWriter()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server went away
        if message is None:
            return
        task, outbox_name = message
        outcome = runtime.run(task)
        tensors = _tensors(outcome.reply)
        bounds: Bounds | None = None
        if tensors:
            outbox.attach(outbox_name)
            bounds = outbox.write(tensors)
            if bounds is not None:
                assert outcome.reply is not None
                outcome = Outcome(_with_tensors(outcome.reply, []))
        conn.send((outcome, bounds, sum(map(len, tensors))))


def _tensors(reply: ClientReply | None) -> list[bytes]:
    if isinstance(reply, FitRes | GetParametersRes):
        return reply.parameters.tensors
    return []


def _with_tensors(reply: ClientReply, tensors: list[bytes]) -> ClientReply:
    """``reply`` (a FitRes or GetParametersRes) holding ``tensors`` instead of its own."""
    assert isinstance(reply, FitRes | GetParametersRes)
    return replace(reply, parameters=Parameters(tensors, reply.parameters.tensor_type))

"""The local backend: a pool of worker processes on this machine.

Workers are started with ``spawn`` (a fresh interpreter: no locks or threads
inherited from the server) and receive ``client_fn`` once, pickled (with
``cloudpickle`` when plain pickle cannot: closures, lambdas). The round's
parameters go into one ``multiprocessing.shared_memory`` block per version;
each worker copies them out once and then serves every client it runs with
them. Results come back through the worker's pipe as soon as each client ends.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

from fedsilo.common.exceptions import ClientDisconnected, ClientFailure, ClientTimeout
from fedsilo.common.typing import Parameters
from fedsilo.simulation.engine import Engine, ParameterPublisher, WorkerSlot
from fedsilo.simulation.runtime import ClientFn, ClientRuntime, Outcome, ParametersHandle, Task

log = logging.getLogger("fedsilo.simulation")

__all__ = ["SharedMemoryPublisher", "default_num_workers", "local_engine"]

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


# Parameters in shared memory ------------------------------------------------------------


@dataclass(frozen=True)
class SharedParametersHandle(ParametersHandle):
    """A shared-memory block holding the tensors back to back, and where each one lies."""

    key: str
    tensor_type: str
    block: str
    bounds: tuple[tuple[int, int], ...]

    def load(self) -> list[bytes]:
        shm = SharedMemory(name=self.block)
        try:
            buffer = shm.buf
            assert buffer is not None
            return [bytes(buffer[start:end]) for start, end in self.bounds]
        finally:
            shm.close()


@dataclass
class _Block:
    shm: SharedMemory
    source: Parameters
    handle: SharedParametersHandle
    in_flight: int = 0


class SharedMemoryPublisher(ParameterPublisher):
    """One block per published version; a block is freed once it is neither current nor used.

    A strategy that sends the same parameters to every client (FedAvg) publishes once per
    round. Publishing equal tensors again reuses the current block.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: dict[str, _Block] = {}
        self._current: _Block | None = None
        self._versions = itertools.count(1)

    def publish(self, parameters: Parameters) -> ParametersHandle:
        with self._lock:
            current = self._current
            if current is not None and (current.source is parameters or (
                    current.source.tensor_type == parameters.tensor_type
                    and current.source.tensors == parameters.tensors)):
                current.in_flight += 1
                return current.handle
            block = self._write(parameters)
            block.in_flight += 1
            self._blocks[block.handle.block] = block
            self._current = block
            if current is not None and current.in_flight == 0:
                self._free(current)
            return block.handle

    def release(self, handle: ParametersHandle) -> None:
        assert isinstance(handle, SharedParametersHandle)
        with self._lock:
            block = self._blocks.get(handle.block)
            if block is None:
                return
            block.in_flight -= 1
            if block.in_flight == 0 and block is not self._current:
                self._free(block)

    def close(self) -> None:
        with self._lock:
            for block in list(self._blocks.values()):
                self._free(block)
            self._current = None

    def _write(self, parameters: Parameters) -> _Block:
        total = sum(len(t) for t in parameters.tensors)
        shm = SharedMemory(create=True, size=max(total, 1))
        buffer = shm.buf
        assert buffer is not None
        bounds = []
        offset = 0
        for tensor in parameters.tensors:
            buffer[offset:offset + len(tensor)] = tensor
            bounds.append((offset, offset + len(tensor)))
            offset += len(tensor)
        handle = SharedParametersHandle(f"{os.getpid()}-{next(self._versions)}",
                                        parameters.tensor_type, shm.name, tuple(bounds))
        return _Block(shm, parameters, handle)

    def _free(self, block: _Block) -> None:
        self._blocks.pop(block.handle.block, None)
        block.shm.close()
        try:
            block.shm.unlink()
        except FileNotFoundError:
            pass


# Worker processes -----------------------------------------------------------------------


class WorkerStartError(RuntimeError):
    """A worker process could not load ``client_fn``; the message holds its error."""


class ProcessSlot(WorkerSlot):
    """One worker process; replaced by a fresh one when it dies or overruns."""

    def __init__(self, context: Any, payload: bytes, state_dir: str | None, index: int) -> None:
        self._context = context
        self._payload = payload
        self._state_dir = state_dir
        self._index = index
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
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._spawn()

    def _wait_ready(self) -> None:
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
            self._wait_ready()
        except WorkerStartError as exc:
            raise ClientFailure(task.cid, str(exc)) from exc
        self._conn.send(task)
        if not self._conn.poll(timeout):
            self._replace()
            raise ClientTimeout(task.cid, f"{kind} gave no reply within {timeout:g} s; its "
                                          "worker process was stopped and replaced")
        try:
            outcome: Outcome = self._conn.recv()
        except (EOFError, OSError):
            code = self._exit_code()
            self._replace()
            raise ClientDisconnected(task.cid, f"its worker process died ({code}) during "
                                               f"{kind}; a fresh worker replaces it") from None
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
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()


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
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the server went away
        if task is None:
            return
        conn.send(runtime.run(task))

"""Shared memory between the server and the local pool's workers, both ways.

Parameters go out through :class:`SharedMemoryPublisher`: one block per version, written
once, read once by each worker. Results come back through each worker's :class:`Outbox`, a
block the server owns and grows when a result does not fit: the worker writes the result's
tensors there and sends only their bounds down its pipe. Either way a model crosses between
processes as one copy in and one copy out, never in the pipe's 64 KiB pieces.
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

from fedsilo.common.typing import Parameters
from fedsilo.simulation.engine import ParameterPublisher
from fedsilo.simulation.runtime import ParametersHandle

__all__ = [
    "Bounds",
    "Outbox",
    "OutboxWriter",
    "SharedMemoryPublisher",
    "SharedParametersHandle",
    "read_tensors",
    "write_tensors",
]

Bounds = tuple[tuple[int, int], ...]


def write_tensors(shm: SharedMemory, tensors: list[bytes]) -> Bounds:
    """Copy ``tensors`` into ``shm`` back to back; return where each one lies."""
    buffer = shm.buf
    assert buffer is not None
    bounds = []
    offset = 0
    for tensor in tensors:
        buffer[offset:offset + len(tensor)] = tensor
        bounds.append((offset, offset + len(tensor)))
        offset += len(tensor)
    return tuple(bounds)


def read_tensors(shm: SharedMemory, bounds: Bounds) -> list[bytes]:
    """Copy the tensors at ``bounds`` out of ``shm``."""
    buffer = shm.buf
    assert buffer is not None
    return [bytes(buffer[start:end]) for start, end in bounds]


@dataclass(frozen=True)
class SharedParametersHandle(ParametersHandle):
    """A shared-memory block holding the tensors back to back, and where each one lies."""

    key: str
    tensor_type: str
    block: str
    bounds: Bounds

    def load(self) -> list[bytes]:
        shm = SharedMemory(name=self.block)
        try:
            return read_tensors(shm, self.bounds)
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
            shm = SharedMemory(create=True, size=max(1, sum(map(len, parameters.tensors))))
            handle = SharedParametersHandle(f"{os.getpid()}-{next(self._versions)}",
                                            parameters.tensor_type, shm.name,
                                            write_tensors(shm, parameters.tensors))
            block = _Block(shm, parameters, handle, in_flight=1)
            self._blocks[shm.name] = block
            self._current = block
            if current is not None and current.in_flight == 0:
                self._free(current)
            return handle

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

    def _free(self, block: _Block) -> None:
        self._blocks.pop(block.handle.block, None)
        _unlink(block.shm)


class Outbox:
    """The server's side of one worker's result block; grown on demand, freed on close."""

    def __init__(self) -> None:
        self.shm: SharedMemory | None = None

    @property
    def name(self) -> str | None:
        return None if self.shm is None else self.shm.name

    def ensure(self, size: int) -> None:
        """Make room for a result of ``size`` bytes (with headroom, to grow seldom)."""
        if self.shm is not None and self.shm.size >= size:
            return
        self.close()
        self.shm = SharedMemory(create=True, size=max(size + size // 4, 1))

    def read(self, bounds: Bounds) -> list[bytes]:
        assert self.shm is not None
        return read_tensors(self.shm, bounds)

    def close(self) -> None:
        if self.shm is not None:
            _unlink(self.shm)
            self.shm = None


class OutboxWriter:
    """The worker's side of its outbox: attaches to the block the server names."""

    def __init__(self) -> None:
        self.shm: SharedMemory | None = None

    def attach(self, name: str | None) -> None:
        if name == (None if self.shm is None else self.shm.name):
            return
        if self.shm is not None:
            self.shm.close()
        self.shm = None if name is None else SharedMemory(name=name)

    def write(self, tensors: list[bytes]) -> Bounds | None:
        """Where the tensors now lie in the outbox, or None when they do not fit."""
        if self.shm is None or sum(map(len, tensors)) > self.shm.size:
            return None
        return write_tensors(self.shm, tensors)


def _unlink(shm: SharedMemory) -> None:
    shm.close()
    try:
        shm.unlink()
    except FileNotFoundError:
        pass

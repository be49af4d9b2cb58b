"""The round's parameters: one shared-memory block per version, loaded once per worker."""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common.typing import FitIns
from fedsilo.simulation.runtime import ClientRuntime, ParametersHandle, Task
from fedsilo.simulation.shared import SharedMemoryPublisher, SharedParametersHandle
from tests.simulation.clients import dyadic_client_fn


def params(value: float) -> fl.common.Parameters:
    return fl.common.ndarrays_to_parameters([np.full(5, value, np.float32),
                                             np.arange(3, dtype=np.int64)])


def exists(name: str) -> bool:
    try:
        SharedMemory(name=name).close()
    except FileNotFoundError:
        return False
    return True


def test_publishing_a_version_once_and_freeing_it_when_unused() -> None:
    publisher = SharedMemoryPublisher()
    first = params(1.0)
    a = publisher.publish(first)
    assert publisher.publish(first) is a  # same object: same block
    assert publisher.publish(params(1.0)) is a  # equal tensors: same block
    assert isinstance(a, SharedParametersHandle)
    assert a.load() == first.tensors
    b = publisher.publish(params(2.0))
    assert isinstance(b, SharedParametersHandle) and b.block != a.block
    assert exists(a.block)  # three tasks still hold the first version
    for _ in range(3):
        publisher.release(a)
    assert not exists(a.block) and exists(b.block)
    publisher.release(b)
    assert exists(b.block)  # still the current version
    publisher.close()
    assert not exists(b.block)


@dataclass(frozen=True)
class CountingHandle(ParametersHandle):
    key: str
    tensor_type: str
    loads: list[str]
    tensors: tuple[bytes, ...]

    def load(self) -> list[bytes]:
        self.loads.append(self.key)
        return list(self.tensors)


def test_a_worker_loads_each_version_once_for_all_its_clients() -> None:
    runtime = ClientRuntime(dyadic_client_fn)
    loads: list[str] = []
    round1 = CountingHandle("v1", "numpy.ndarray", loads, tuple(params(0.0).tensors))
    round2 = CountingHandle("v2", "numpy.ndarray", loads, tuple(params(1.0).tensors))
    empty = fl.common.Parameters([], "numpy.ndarray")
    replies = [runtime.run(Task(str(cid), FitIns(empty, {}), handle))
               for handle in (round1, round2) for cid in range(5)]
    assert loads == ["v1", "v2"]
    first = fl.common.parameters_to_ndarrays(replies[0].reply.parameters)  # type: ignore[union-attr]
    assert first[0] == pytest.approx(np.full(5, -0.5))  # client 0 adds delta -0.5 to zeros

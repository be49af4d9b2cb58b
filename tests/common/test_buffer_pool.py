"""Kept buffers are handed out again only once nothing else refers to them."""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np
import pytest

from fedsilo.common.memory import BufferPool


def test_a_buffer_nothing_holds_is_handed_out_again() -> None:
    pool = BufferPool(2)
    first = pool.take(1000)
    kept = weakref.ref(first)
    del first
    again = pool.take(1000)
    assert again is kept()  # the same array object, not merely the same address
    assert again.dtype == np.uint8 and again.shape == (1000,)


def test_eviction_lets_go_of_a_free_buffer_first_and_discard_forgets_one() -> None:
    pool = BufferPool(2)
    held = pool.take(100)  # the oldest, still in use
    free = weakref.ref(pool.take(200))  # nothing holds it
    pool.take(300)  # the pool is full: the free buffer goes, not the older held one
    assert free() is None and pool.kept == 2
    newer = pool.take(100)  # the kept one of this size is in use: a new one
    assert pool.kept == 2
    pool.discard(newer)
    assert pool.kept == 1
    kept = weakref.ref(held)
    del held, newer
    assert pool.take(100) is kept()  # the one the pool still keeps, free now


def _hold(buffer: np.ndarray, holder: str) -> object:
    if holder == "view":
        return buffer.view(np.float64)
    if holder == "memoryview":
        return memoryview(buffer).toreadonly()[10:20]
    if holder == "array from a memoryview":
        return np.frombuffer(memoryview(buffer)[8:16], np.float32)
    return buffer[500:]


@pytest.mark.parametrize("holder", ["view", "memoryview", "array from a memoryview", "slice"])
def test_a_buffer_that_anything_still_holds_is_not(holder: str) -> None:
    pool = BufferPool(2)
    buffer = pool.take(1000)
    buffer[:] = 7
    held = _hold(buffer, holder)
    del buffer
    other = pool.take(1000)
    other[:] = 1  # must not reach what ``held`` sees
    assert bytes(memoryview(held).cast("B"))[:1] == b"\x07"  # type: ignore[arg-type]
    del held, other
    assert pool.kept == 2


def test_other_sizes_get_new_buffers_and_the_oldest_is_let_go_beyond_keep() -> None:
    pool = BufferPool(2)
    a = pool.take(100)
    kept_a = weakref.ref(a)
    b = pool.take(200)
    del a, b
    assert kept_a() is not None and pool.kept == 2  # the pool still holds both
    c = pool.take(300)  # no kept buffer of this size: a new one, and the oldest goes
    assert c.size == 300 and pool.kept == 2
    assert kept_a() is None  # nothing else held it: freed
    with pytest.raises(ValueError, match="at least 1"):
        BufferPool(0)


def test_threads_never_share_a_buffer() -> None:
    """Each thread writes its own mark over the whole buffer, waits, and checks that no
    other thread was handed the same buffer meanwhile."""
    pool = BufferPool(3)
    clashes: list[int] = []
    stop = time.monotonic() + 1.0

    def work(mark: int) -> None:
        while time.monotonic() < stop:
            buffer = pool.take(4096)
            buffer[:] = mark
            time.sleep(0.0005)
            if not np.all(buffer == mark):
                clashes.append(mark)
            del buffer

    threads = [threading.Thread(target=work, args=(mark,)) for mark in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert clashes == []
    assert pool.kept <= 3


def test_a_copy_of_a_pool_or_of_what_holds_one_starts_empty() -> None:
    """A strategy keeps a pool for its sums; copying or pickling the strategy still works."""
    import copy
    import pickle

    import fedsilo as fl

    pool = BufferPool(3)
    held = pool.take(100)
    assert pool.kept == 1 and held is not None
    for clone in (copy.deepcopy(pool), pickle.loads(pickle.dumps(pool))):
        assert clone.kept == 0
        clone.take(100)
        assert clone.kept == 1
    strategy = fl.server.strategy.FedAvg()
    accumulator = strategy.fit_accumulator(
        1, fl.common.ndarrays_to_parameters([np.zeros(10, dtype=np.float32)]))
    assert accumulator is not None
    res = fl.common.FitRes(fl.common.Status(fl.common.Code.OK, ""),
                           fl.common.Parameters([], ""), 1, {})
    accumulator.add(None, res, [np.ones(10, dtype=np.float32)])  # type: ignore[arg-type]
    assert isinstance(copy.deepcopy(strategy), fl.server.strategy.FedAvg)
    assert isinstance(pickle.loads(pickle.dumps(strategy)), fl.server.strategy.FedAvg)

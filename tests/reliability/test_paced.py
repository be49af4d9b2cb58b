"""Large replies between fedsilo peers: sent in frames, read a few at a time by the server.

Scaled down: the threshold for pacing and the frame size are lowered so that a model of a
few hundred kilobytes takes the path a model of hundreds of megabytes takes.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedsilo as fl
from fedsilo.common import ProtocolError, chunking
from fedsilo.common.memory import BufferPool
from fedsilo.server.grpc import client_proxy
from fedsilo.server.grpc import servicer as servicer_module
from tests.conftest import free_port
from tests.reliability import frame_schema
from tests.reliability.peers import ServerThread, start_numpy_clients

pytestmark = pytest.mark.timeout(120)

SHAPES = [(300, 200), (7,), (50_000,)]  # 480 kB + 56 B + 400 kB of float64


def model() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal(s) for s in SHAPES]


@settings(max_examples=200, deadline=None, database=None)
@given(transfer=st.integers(1, 2**64 - 1), index=st.integers(0, 2**32 - 1),
       count=st.integers(0, 2**32 - 1), head=st.binary(max_size=64),
       sizes=st.lists(st.integers(0, 2**64 - 1), max_size=5), data=st.binary(max_size=300))
def test_hand_written_frames_read_the_same_as_protobufs(
    transfer: int, index: int, count: int, head: bytes, sizes: list[int], data: bytes
) -> None:
    pieces = [memoryview(data)[: len(data) // 2], memoryview(data)[len(data) // 2:]]
    ours = chunking._frame_bytes(transfer, index, count, head, sizes, pieces)
    by_protobuf = frame_schema.Frame.FromString(ours).chunk
    assert (by_protobuf.transfer, by_protobuf.index, by_protobuf.count) == (transfer, index, count)
    assert (by_protobuf.head, list(by_protobuf.sizes), by_protobuf.data) == (head, sizes, data)

    reference = frame_schema.Frame(chunk=frame_schema.Chunk(
        transfer=transfer, index=index, count=count, head=head, sizes=sizes, data=data))
    parsed = chunking.parse_frame(reference.SerializeToString())
    assert (parsed.transfer, parsed.index, parsed.count) == (transfer, index, count)
    assert (parsed.head, parsed.sizes, bytes(parsed.data)) == (head, sizes, data)


@pytest.mark.parametrize("junk", [
    b"\x7a", b"\x7a\x05\x08", b"\x7a\x02\x08\x80", b"\x7a\x03\x22\x05a", b"\x7a\x02\x40\x01",
    b"\x7a\x0b\x08" + b"\xff" * 10, b"\x0a\x00",
])
def test_broken_frames_are_protocol_errors(junk: bytes) -> None:
    with pytest.raises(ProtocolError):
        chunking.parse_frame(junk)


class Offset(fl.client.NumPyClient):
    def __init__(self, offset: float, n: int) -> None:
        self.offset, self.n = offset, n

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return model()

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return [p + self.offset for p in parameters], self.n, {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return 0.0, self.n, {}


class SlotWatch:
    """Follows the servicer's slots for large replies: how many are held, at most."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.held = self.most = self.taken = 0
        take, release = (servicer_module.FederationServicer._take_slot,
                         servicer_module._ReleaseOnce.__call__)
        watch = self

        async def watched_take(servicer: Any, bridge: Any) -> bool:
            got = await take(servicer, bridge)
            if got:
                with watch.lock:
                    watch.held += 1
                    watch.taken += 1
                    watch.most = max(watch.most, watch.held)
            return got

        def watched_release(once: Any) -> None:
            if once._slots is not None:
                with watch.lock:
                    watch.held -= 1
            release(once)

        monkeypatch.setattr(servicer_module.FederationServicer, "_take_slot", watched_take)
        monkeypatch.setattr(servicer_module._ReleaseOnce, "__call__", watched_release)


def federate(strategy: fl.server.strategy.Strategy, clients: list[Offset],
             rounds: int) -> dict[int, list[np.ndarray]]:
    address = f"127.0.0.1:{free_port()}"
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=rounds, round_timeout=60))
    errors: list[BaseException] = []
    threads = start_numpy_clients(address, [(c, None) for c in clients], errors)
    server.join(100)
    for thread in threads:
        thread.join(10)
    assert not errors
    return strategy.seen  # type: ignore[attr-defined, no-any-return]


def seeing(strategy_class: type, n: int, **kwargs: Any) -> fl.server.strategy.Strategy:
    seen: dict[int, list[np.ndarray]] = {}

    def evaluate(server_round: int, params: list[np.ndarray], config: dict) -> tuple:
        seen[server_round] = [p.copy() for p in params]
        return 0.0, {}

    strategy = strategy_class(min_fit_clients=n, min_available_clients=n, fraction_evaluate=0.0,
                              evaluate_fn=evaluate,
                              initial_parameters=fl.common.ndarrays_to_parameters(model()),
                              **kwargs)
    strategy.seen = seen
    return strategy  # type: ignore[no-any-return]


@pytest.fixture
def small_pacing(monkeypatch: pytest.MonkeyPatch) -> SlotWatch:
    """Pace replies over 64 kB in frames of 32 kB, one reply read at a time."""
    monkeypatch.setattr(chunking, "PACED_ABOVE", 64 * 1024)
    monkeypatch.setattr(chunking, "PACED_FRAME", 32 * 1024)
    monkeypatch.setenv("FEDSILO_PACED_REPLIES", "1")
    # A slot that is never handed back would stall the round for good, not for 10 s.
    monkeypatch.setattr(servicer_module, "PACING_WAIT_S", 3600.0)
    return SlotWatch(monkeypatch)


def test_large_replies_are_read_one_at_a_time_and_averaged_exactly(
    small_pacing: SlotWatch
) -> None:
    clients = [Offset(1.0, 10), Offset(-2.0, 30), Offset(4.0, 20), Offset(0.5, 40)]
    seen = federate(seeing(fl.server.strategy.FedAvg, 4), clients, rounds=2)
    assert small_pacing.taken == 2 * len(clients)  # every reply came paced
    assert small_pacing.most == 1 and small_pacing.held == 0
    expected = model()
    total = sum(c.n for c in clients)
    for server_round in (1, 2):
        expected = [sum(c.n * (p + c.offset) for c in clients) / total for p in expected]
        for got, want in zip(seen[server_round], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_strategy_that_keeps_every_reply_still_gets_all_of_them(
    small_pacing: SlotWatch
) -> None:
    """FedMedian holds every result until the round ends; the slot must not wait for that."""
    clients = [Offset(1.0, 10), Offset(-2.0, 30), Offset(4.0, 20)]
    seen = federate(seeing(fl.server.strategy.FedMedian, 3), clients, rounds=1)
    assert small_pacing.taken == len(clients) and small_pacing.held == 0
    for got, start in zip(seen[1], model(), strict=True):
        np.testing.assert_allclose(got, start + 1.0, rtol=1e-12)  # median of +1, -2, +4


def frames_of(arrays: list[np.ndarray]) -> list[bytes]:
    ins = fl.common.FitIns(fl.common.ndarrays_to_parameters(arrays), {})
    return chunking.encode_frames(ins, max_length=2**20, peer_limit=2**20, what="test",
                                  paced_above=1024, paced_frame=16 * 1024)


def assemble(assembler: chunking.ChunkAssembler, frames: list[bytes]) -> list[np.ndarray]:
    *head, message = [assembler.feed(f) for f in frames]
    assert head == [None] * len(head)
    return fl.common.parameters_to_ndarrays(message.parameters)  # type: ignore[union-attr]


def test_a_clients_model_buffer_is_writable_and_reused_only_when_nothing_holds_it() -> None:
    from fedsilo.common import serde

    assembler = chunking.ChunkAssembler(serde.server_message_from_bytes, private=True)
    first = assemble(assembler, frames_of(model()))
    assert all(a.flags.writeable for a in first)
    kept = first[2]
    first_address = kept.__array_interface__["data"][0]
    del first
    second = assemble(assembler, frames_of([m + 1.0 for m in model()]))
    # The first message's array is still held: the second went into new memory.
    np.testing.assert_array_equal(kept, model()[2])
    assert second[2].__array_interface__["data"][0] != first_address
    second_address = second[2].__array_interface__["data"][0]
    del second, kept
    third = assemble(assembler, frames_of([m + 2.0 for m in model()]))
    assert third[2].__array_interface__["data"][0] == second_address  # refilled, not new
    for got, want in zip(third, model(), strict=True):
        np.testing.assert_array_equal(got, want + 2.0)


def test_the_servers_assembled_tensors_are_read_only() -> None:
    from fedsilo.common import serde

    assembler = chunking.ChunkAssembler(serde.server_message_from_bytes)
    arrays = assemble(assembler, frames_of(model()))
    assert not any(a.flags.writeable for a in arrays)


def test_the_first_frame_announces_the_whole_models_size() -> None:
    """What the client sizes its malloc settings by before the model's buffers exist."""
    from fedsilo.common import serde

    assembler = chunking.ChunkAssembler(serde.server_message_from_bytes)
    arrays = model()
    frames = frames_of(arrays)
    assert len(frames) > 2 and assembler.announced == 0
    tensors = fl.common.ndarrays_to_parameters(arrays).tensors
    for frame in frames[:-1]:
        assert assembler.feed(frame) is None
        assert assembler.announced == sum(len(t) for t in tensors)
    assert assembler.feed(frames[-1]) is not None
    assert assembler.announced == 0


def test_a_broadcasts_frames_are_freed_once_written(
    small_pacing: SlotWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model's frames (as large as the model) go once the stream has written them: while
    the client trains, nothing in the server refers to them any more, instead of a cache or
    the stream's sender keeping them until the next round."""
    first_frames: list[bytes] = []  # each round's first frame: held here, and here only
    encode = chunking.encode_frames

    def recording(message: Any, **kwargs: Any) -> list[bytes]:
        frames = encode(message, **kwargs)
        if isinstance(message, fl.common.FitIns):
            assert len(frames) > 1  # the model goes in frames
            first_frames.append(frames[0])
        return frames

    monkeypatch.setattr(chunking, "encode_frames", recording)
    holders_during_fit: list[int] = []

    def holders() -> int:  # references beyond first_frames' own and getrefcount's argument
        gc.collect()
        return sys.getrefcount(first_frames[-1]) - 2

    class Probe(Offset):
        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
            deadline = time.monotonic() + 10  # the write's completion may trail the delivery
            held = holders()
            while held and time.monotonic() < deadline:
                time.sleep(0.01)
                held = holders()
            holders_during_fit.append(held)
            return super().fit(parameters, config)

    seen = federate(seeing(fl.server.strategy.FedAvg, 1), [Probe(1.0, 10)], rounds=2)
    assert len(first_frames) == 2
    assert holders_during_fit == [0, 0]
    for got, start in zip(seen[2], model(), strict=True):
        np.testing.assert_allclose(got, start + 2.0, rtol=1e-12)


def test_shared_encodings_held_weakly_live_as_long_as_a_sender_holds_them() -> None:
    cache = client_proxy._EncodedInstructions(size=1, weak=True)
    ins = fl.common.FitIns(fl.common.ndarrays_to_parameters(model()), {})
    builds: list[int] = []

    def build(ins: Any) -> list[bytes]:
        builds.append(1)
        return [b"frame"] * 3

    first = cache.encode(ins, 7, build)
    assert cache.encode(ins, 7, build) is first and len(builds) == 1  # shared while held
    del first
    gc.collect()
    again = cache.encode(ins, 7, build)  # freed once no one held it: built anew
    assert list(again) == [b"frame"] * 3 and len(builds) == 2

    strong = client_proxy._EncodedInstructions(size=1)
    kept = strong.encode(ins, 0, lambda ins: b"message")
    del kept
    assert strong.encode(ins, 0, lambda ins: b"other") == b"message"  # held until evicted


def test_reply_buffers_are_filled_again_round_after_round(
    small_pacing: SlotWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large replies are assembled in buffers the server keeps: one reply read at a time
    needs two buffers at most (one being read while the round loop lets go of the last),
    and every later reply lands in memory an earlier one left, not in memory mapped afresh."""
    outcomes: list[bool] = []  # per reply: whether a kept buffer was free for it

    class Watched(BufferPool):
        def _free(self, size: int) -> int | None:
            index = super()._free(size)
            outcomes.append(index is not None)
            return index

    monkeypatch.setattr(servicer_module, "BufferPool", Watched)
    clients = [Offset(1.0, 10), Offset(-2.0, 30), Offset(4.0, 20)]
    seen = federate(seeing(fl.server.strategy.FedAvg, 3), clients, rounds=4)
    assert len(outcomes) == 4 * len(clients)
    assert 1 <= outcomes.count(False) <= 2
    expected = model()
    for server_round in range(1, 5):
        expected = [sum(c.n * (p + c.offset) for c in clients) / 60 for p in expected]
        for got, want in zip(seen[server_round], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_clients_model_buffer_takes_every_later_model(
    small_pacing: SlotWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client lets go of each instruction before it waits for the next, so the model of
    every round after the first lands in the buffer of the one before."""
    outcomes: list[bool] = []  # per model received in frames: whether the buffer was free

    class Watched(BufferPool):
        def _free(self, size: int) -> int | None:
            index = super()._free(size)
            outcomes.append(index is not None)
            return index

    monkeypatch.setattr(chunking, "BufferPool", Watched)  # private assemblers' pools only
    seen = federate(seeing(fl.server.strategy.FedAvg, 1), [Offset(1.0, 10)], rounds=4)
    assert outcomes == [False, True, True, True]
    for got, start in zip(seen[4], model(), strict=True):
        np.testing.assert_allclose(got, start + 4.0, rtol=1e-12)


def test_a_paced_messages_first_frame_carries_no_tensor_bytes() -> None:
    """A reply that waits for a slot costs the server its first frame only: the head."""
    from fedsilo.common import serde

    arrays = model()
    frames = frames_of(arrays)
    first = chunking.parse_frame(frames[0])
    assert first.index == 0 and first.count == len(frames) and len(first.data) == 0
    assert len(frames[0]) < 1024
    tensors = fl.common.ndarrays_to_parameters(arrays).tensors
    assert sum(len(chunking.parse_frame(f).data) for f in frames) == sum(len(t) for t in tensors)
    assembled = assemble(chunking.ChunkAssembler(serde.server_message_from_bytes), frames)
    for got, want in zip(assembled, arrays, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_message_abandoned_halfway_leaves_its_buffer_out_of_the_pool() -> None:
    from fedsilo.common import serde

    pool = BufferPool(3)
    assembler = chunking.ChunkAssembler(serde.server_message_from_bytes, pool=pool)
    frames = frames_of(model())
    assert assembler.feed(frames[0]) is None and assembler.feed(frames[1]) is None
    assert pool.kept == 1
    with pytest.raises(ProtocolError, match="was due"):
        assembler.feed(frames[3])  # out of order
    assert pool.kept == 0 and not assembler.busy
    assert assembler.feed(frames[0]) is None and pool.kept == 1
    assembler.abandon()  # the stream ended halfway
    assert pool.kept == 0 and not assembler.busy
    with pytest.raises(ProtocolError, match="must start with frame 0"):
        assembler.check_first(frames[1])  # refused before any buffer is taken
    assembler.check_first(frames[0])
    assert pool.kept == 0
    for got, want in zip(assemble(assembler, frames), model(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert pool.kept == 1

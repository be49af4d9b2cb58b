"""Parameter sets larger than one gRPC message travel in chunks between fedsilo peers.

Scaled down: a 4 MiB message limit stands for protobuf's 2 GiB and a 20 MB parameter set
for a 2.5 GiB one; the code path (frames, negotiation, reassembly) is the same.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedsilo as fl
from fedsilo.common import (
    ClientFailure,
    FitIns,
    FitRes,
    Status,
    chunking,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
    serde,
)
from fedsilo.common.typing import Code
from fedsilo.server.grpc.server import start_grpc_server
from tests.conftest import free_port
from tests.reliability.peers import (
    RawPeer,
    RecordingClientManager,
    ServerThread,
    start_numpy_clients,
)

pytestmark = pytest.mark.timeout(120)

LIMIT = 4 * 2**20
BIG_SHAPES = [(2000, 1000), (1000,), (500_000,)]  # 16 MB + 8 kB + 4 MB of float64


def big_model() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s) for s in BIG_SHAPES]


@settings(max_examples=60, deadline=None, database=None)
@given(sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=6),
       limit=st.integers(3000, 20000))
def test_frames_respect_the_limit_and_reassemble_exactly(sizes: list[int], limit: int) -> None:
    arrays = [np.arange(n, dtype=np.float32) + i for i, n in enumerate(sizes)]
    res = FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters(arrays), 17, {"m": 1.5})
    frames = chunking.encode_frames(res, max_length=limit, peer_limit=limit, what="test")
    assert all(len(f) <= limit for f in frames)
    assembler = chunking.ChunkAssembler(serde.client_message_from_bytes)
    if len(frames) == 1 and not chunking.is_frame(frames[0]):
        out: Any = serde.client_message_from_bytes(frames[0])
    else:
        *head, last = [assembler.feed(f) for f in frames]
        assert head == [None] * len(head)
        out = last
    assert isinstance(out, FitRes) and out.num_examples == 17 and out.metrics == {"m": 1.5}
    for got, want in zip(parameters_to_ndarrays(out.parameters), arrays, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_message_over_the_limit_for_a_peer_without_chunks_names_the_limit() -> None:
    ins = FitIns(ndarrays_to_parameters(big_model()), {})
    with pytest.raises(chunking.TooLarge, match=f"over the message limit of {LIMIT} bytes; "
                                                "raise grpc_max_message_length"):
        chunking.encode_frames(ins, max_length=LIMIT, peer_limit=None,
                               what="grpc_max_message_length")


class Trainer(fl.client.NumPyClient):
    """Adds its offset to every parameter; keeps what it received."""

    def __init__(self, offset: float, n: int) -> None:
        self.offset, self.n = offset, n
        self.received: list[list[np.ndarray]] = []

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return big_model()

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        self.received.append([p.copy() for p in parameters])
        return [p + self.offset for p in parameters], self.n, {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return 0.0, self.n, {}


def test_a_federation_over_the_message_limit_runs_in_chunks_between_fedsilo_peers() -> None:
    address = f"127.0.0.1:{free_port()}"
    seen: dict[int, list[np.ndarray]] = {}

    def evaluate(server_round: int, params: list[np.ndarray], config: dict) -> tuple:
        seen[server_round] = [p.copy() for p in params]
        return 0.0, {}

    strategy = fl.server.strategy.FedAvg(
        min_fit_clients=2, min_available_clients=2, fraction_evaluate=0.0, evaluate_fn=evaluate)
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=2, round_timeout=60),
                          grpc_max_message_length=LIMIT)
    # The second client reads smaller messages than the server: frames follow the smaller limit.
    clients = [(Trainer(1.0, 10), LIMIT), (Trainer(-3.0, 30), LIMIT // 2)]
    errors: list[BaseException] = []
    threads = start_numpy_clients(address, clients, errors)  # type: ignore[arg-type]
    server.join(100)
    for thread in threads:
        thread.join(10)
    assert not errors
    total_bytes = sum(a.nbytes for a in big_model())
    assert total_bytes > 4 * LIMIT
    # Round 0: one client's initial parameters, which arrived in chunks.
    for got, want in zip(seen[0], big_model(), strict=True):
        np.testing.assert_array_equal(got, want)
    expected = big_model()
    for server_round in (1, 2):
        for client, _ in clients:  # every client received the global model intact
            for got, want in zip(client.received[server_round - 1], expected, strict=True):
                np.testing.assert_array_equal(got, want)
        expected = [(10 * (p + 1.0) + 30 * (p - 3.0)) / 40 for p in expected]
        for got, want in zip(seen[server_round], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_peer_that_announced_nothing_gets_a_failure_naming_the_limit_not_chunks() -> None:
    """What a Flower client gets: the server never sends it a chunk frame."""
    manager = RecordingClientManager()
    server, port = start_grpc_server(client_manager=manager, server_address="127.0.0.1:0",
                                     max_message_length=LIMIT)
    peer = RawPeer(f"127.0.0.1:{port}")  # no fedsilo-chunking metadata, like Flower
    try:
        assert manager.wait_for(1, timeout=10)
        (proxy,) = manager.all().values()
        with pytest.raises(ClientFailure) as caught:
            proxy.fit(FitIns(ndarrays_to_parameters(big_model()), {}), timeout=5)
        assert f"over the message limit of {LIMIT} bytes" in str(caught.value)
        assert "start_server(grpc_max_message_length=...)" in str(caught.value)
        # The peer's stream is still usable: a small instruction goes through as usual.
        answered = threading.Thread(target=lambda: answer_once(peer), daemon=True)
        answered.start()
        res = proxy.fit(FitIns(ndarrays_to_parameters([np.zeros(3)]), {}), timeout=10)
        assert res.num_examples == 1
    finally:
        peer.close()
        server.stop(None)


def answer_once(peer: RawPeer) -> None:
    data = peer.receive()
    assert not chunking.is_frame(data)
    ins = serde.server_message_from_bytes(data)
    assert isinstance(ins, FitIns)
    peer.send(serde.client_message_to_bytes(FitRes(Status(Code.OK, ""), ins.parameters, 1, {})))

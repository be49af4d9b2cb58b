"""Hostile peers beside honest clients never stop a run nor change its result.

Each federation runs two honest clients and one hostile raw gRPC peer for two rounds;
its final parameters must equal those of the same federation run without the peer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import FitIns, GetParametersIns, serde
from fedsilo.server.client_manager import Criterion
from fedsilo.server.client_proxy import ClientProxy
from tests.conftest import free_port
from tests.reliability import frame_schema
from tests.reliability.peers import (
    FirstRoundWaitsForAll,
    Honest,
    RawPeer,
    RecordingClientManager,
    RecordingStrategy,
    ServerThread,
    fit_res_bytes,
    serve_raw,
    start_client_thread,
)

pytestmark = pytest.mark.timeout(90)

ROUNDS = 2


def honest_clients() -> list[Honest]:
    return [Honest(1.0, 10), Honest(3.0, 30)]


def start_honest(address: str, clients: list[Honest]) -> list[threading.Thread]:
    return [start_client_thread(address, c, [], max_wait_time=30) for c in clients]


@pytest.fixture(scope="module")
def honest_result() -> list[np.ndarray]:
    """The final parameters of the honest clients' federation, run for real without a peer."""
    address = f"127.0.0.1:{free_port()}"
    strategy = RecordingStrategy(2)
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=ROUNDS, round_timeout=20))
    start_honest(address, honest_clients())
    server.join(60)
    return strategy.aggregated[ROUNDS]


class Vanish(Exception):
    """Raised inside the peer's answer function: the peer drops its stream."""


def nan_with_huge_count(ins: Any) -> list[bytes]:
    arrays = [np.full_like(a, np.nan) for a in fl.common.parameters_to_ndarrays(ins.parameters)]
    return [fit_res_bytes(arrays, 10**18)]


def chunk_bomb(ins: Any) -> list[bytes]:
    """A first chunk frame that announces a terabyte of tensors."""
    chunk = frame_schema.Chunk(transfer=1, index=0, count=2**20, sizes=[2**40], data=b"x")
    return [frame_schema.Frame(chunk=chunk).SerializeToString()]


HOSTILE: dict[str, Any] = {
    "disconnects when picked": lambda ins: (_ for _ in ()).throw(Vanish()),
    "NaN with a huge num_examples": nan_with_huge_count,
    "bytes that are no message": lambda ins: [b"\x00\x01\x02" * 1000],
    "a chunk frame announcing a terabyte": chunk_bomb,
    "a reply before being asked": lambda ins: [],
}


def run_hostile_peer(address: str, kind: str) -> RawPeer:
    peer = RawPeer(address)
    answer = HOSTILE[kind]
    if kind == "a reply before being asked":
        peer.send(fit_res_bytes([np.ones(3)], 5))

    def answer_or_vanish(ins: Any) -> list[bytes]:
        try:
            return answer(ins)  # type: ignore[no-any-return]
        except Vanish:
            peer.close()
            return []

    serving = serve_raw(peer, answer_or_vanish)
    if kind == "a reply before being asked":
        # The server cuts the stream off as soon as it reads that reply. The honest clients
        # join only then: had a round started first, the reply would have been taken for the
        # answer to the round's instruction, which is no longer unsolicited.
        serving.join(30)
        assert peer.ended is not None, "the server kept the stream of an unsolicited reply"
    return peer


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_the_honest_federation_finishes_with_its_own_result(
    kind: str, honest_result: list[np.ndarray]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    first = 2 if kind == "a reply before being asked" else 3  # that one is cut off at once
    strategy = FirstRoundWaitsForAll(first, 2)
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=ROUNDS, round_timeout=10))
    peer = run_hostile_peer(address, kind)
    start_honest(address, honest_clients())
    server.join(60)
    peer.close()
    assert strategy.results == {1: 2, 2: 2}
    if first == 3:
        assert len(strategy.failures[1]) == 1  # the hostile peer, with its reason
    for got, want in zip(strategy.aggregated[ROUNDS], honest_result, strict=True):
        np.testing.assert_array_equal(got, want)


class RegistrationOrder(RecordingClientManager):
    """Samples clients in the order they joined, once two are in: the hostile peer, which
    joins first, is asked first, and the honest client is there to be asked next."""

    first_call = True

    def sample(self, num_clients: int, min_num_clients: int | None = None,
               criterion: Criterion | None = None) -> list[ClientProxy]:
        wanted = min_num_clients or num_clients
        if self.first_call:
            self.first_call, wanted = False, max(2, wanted)
        if not self.wait_for(wanted, timeout=30):
            return []
        return list(self.all().values())[:num_clients]


def test_when_the_client_asked_for_initial_parameters_vanishes_another_is_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fedsilo.server")
    address = f"127.0.0.1:{free_port()}"
    manager = RegistrationOrder()
    seen: dict[int, list[np.ndarray]] = {}

    def evaluate(server_round: int, params: list[np.ndarray], config: dict) -> tuple:
        seen[server_round] = [p.copy() for p in params]
        return 0.0, {}

    strategy = fl.server.strategy.FedAvg(min_fit_clients=1, min_available_clients=1,
                                         fraction_evaluate=0.0, evaluate_fn=evaluate)
    server = ServerThread(server_address=address, strategy=strategy, client_manager=manager,
                          config=fl.server.ServerConfig(num_rounds=1, round_timeout=20))
    peer = RawPeer(address)
    asked: list[str] = []

    def vanish_on_get_parameters(ins: Any) -> Iterator[bytes]:
        asked.append(type(ins).__name__)
        peer.close()
        return iter(())

    serve_raw(peer, lambda ins: list(vanish_on_get_parameters(ins)))
    assert manager.wait_for(1, timeout=20)
    hostile_cid = manager.registered[0]
    honest = Honest(2.0, 10)
    start_honest(address, [honest])
    server.join(60)
    assert asked == ["GetParametersIns"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"initial parameters from client {hostile_cid} failed")
               for m in messages), messages
    (honest_cid,) = [c for c in manager.registered if c != hostile_cid]
    assert f"initial parameters from client {honest_cid}" in messages
    # Round 0 holds the honest client's parameters, round 1 its training on them.
    for got, want in zip(seen[0], honest.get_parameters({}), strict=True):
        np.testing.assert_array_equal(got, want)
    assert honest.fits == 1


def test_fit_and_get_parameters_names_are_what_the_peer_saw() -> None:
    """Guards the peer script above: instructions decode to the dataclasses it matches on."""
    data = serde.server_message_to_bytes(GetParametersIns(config={}))
    assert isinstance(serde.server_message_from_bytes(data), GetParametersIns)
    fit = serde.server_message_to_bytes(FitIns(fl.common.ndarrays_to_parameters([]), {}))
    assert isinstance(serde.server_message_from_bytes(fit), FitIns)

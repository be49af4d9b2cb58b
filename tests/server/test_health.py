"""ClientHealth: which failures set a client aside, and what puts it back."""

from __future__ import annotations

import concurrent.futures

from fedsilo.common.exceptions import ClientDisconnected, ClientReportedError, ClientTimeout
from fedsilo.server.client_manager import SimpleClientManager
from fedsilo.server.health import ClientHealth
from fedsilo.simulation.inprocess import InProcessClientProxy
from tests.reliability.peers import Honest


def proxy(cid: str) -> InProcessClientProxy:
    return InProcessClientProxy(cid, Honest(1.0, 10).to_client())


def timeout(cid: str) -> ClientTimeout:
    return ClientTimeout(cid, "no reply within 1 s")


def test_three_failed_rounds_in_a_row_set_a_client_aside_and_a_success_resets_the_count() -> None:
    health = ClientHealth(3)
    a, b = proxy("a"), proxy("b")
    for server_round in (1, 2):
        health.record(a, server_round, timeout("a"))
        health.record(a, server_round, timeout("a"))  # its evaluation of the same round
        health.record(b, server_round, ClientReportedError("b", "boom"))
    health.record(b, 3, None)  # b answers in round 3: its count starts over
    health.record(a, 3, timeout("a"))
    health.record(b, 4, ClientReportedError("b", "boom"))
    assert health.benched == {"a"}


def test_a_client_that_disconnected_is_not_counted_and_zero_turns_it_off() -> None:
    health, off = ClientHealth(3), ClientHealth(0)
    a = proxy("a")
    for server_round in (1, 2, 3):
        health.record(a, server_round, ClientDisconnected("a", "stream ended"))
        off.record(a, server_round, timeout("a"))
    assert health.benched == frozenset() and off.benched == frozenset()


def test_the_sampling_view_leaves_out_clients_set_aside_until_their_probe_answers() -> None:
    manager = SimpleClientManager(seed=1)
    clients = [proxy(cid) for cid in ("a", "b", "c")]
    for client in clients:
        manager.register(client)
    health = ClientHealth(1)
    health.record(clients[0], 1, timeout("a"))
    view = health.sampling_view(manager)
    assert view.num_available() == 2
    assert {c.cid for c in view.sample(2)} == {"b", "c"}
    assert set(view.all()) == {"b", "c"}
    pool = concurrent.futures.ThreadPoolExecutor(1)
    assert health.probe(5.0, lambda: pool) == []  # the probe goes out
    pool.shutdown(wait=True)  # and is answered
    assert health.probe(5.0, lambda: pool) == ["a"]
    assert health.sampling_view(manager) is manager

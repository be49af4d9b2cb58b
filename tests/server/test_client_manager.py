from __future__ import annotations

import threading

from fedsilo.server import Criterion, SimpleClientManager
from fedsilo.server.client_proxy import ClientProxy


class Dummy(ClientProxy):
    def get_properties(self, *a, **k):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    get_parameters = fit = evaluate = reconnect = get_properties


def test_register_rejects_duplicate_ids_and_unregister_removes() -> None:
    manager = SimpleClientManager()
    a = Dummy("a")
    assert manager.register(a) and not manager.register(Dummy("a"))
    assert manager.num_available() == 1
    manager.unregister(a)
    assert manager.num_available() == 0


def test_wait_for_returns_when_enough_clients_arrive() -> None:
    manager = SimpleClientManager()
    timer = threading.Timer(0.2, lambda: [manager.register(Dummy(str(i))) for i in range(3)])
    timer.start()
    assert manager.wait_for(3, timeout=10)
    assert not manager.wait_for(4, timeout=0.1)


def test_sample_is_reproducible_with_a_seed_and_respects_criterion() -> None:
    def build() -> SimpleClientManager:
        manager = SimpleClientManager(seed=3)
        for i in reversed(range(10)):
            manager.register(Dummy(f"c{i}"))
        return manager

    first = [c.cid for c in build().sample(4)]
    second = [c.cid for c in build().sample(4)]
    assert first == second and len(set(first)) == 4

    class EvenOnly(Criterion):
        def select(self, client: ClientProxy) -> bool:
            return int(client.cid[1:]) % 2 == 0

    chosen = build().sample(5, criterion=EvenOnly())
    assert sorted(c.cid for c in chosen) == ["c0", "c2", "c4", "c6", "c8"]


def test_sample_returns_nothing_when_min_clients_never_come() -> None:
    manager = SimpleClientManager(wait_timeout=0.1)
    manager.register(Dummy("only"))
    assert manager.sample(1, min_num_clients=2) == []

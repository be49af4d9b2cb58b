"""VirtualClientManager: sampling over ids, proxies only for the sampled."""

from __future__ import annotations

import pytest

import fedsilo as fl
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.simulation import InProcessClientProxy, VirtualClientManager
from fedsilo.simulation.client_manager import ClientIds
from tests.simulation.clients import DyadicClient


class Made:
    """A proxy factory that counts what it makes."""

    def __init__(self) -> None:
        self.cids: list[str] = []

    def __call__(self, cid: str) -> ClientProxy:
        self.cids.append(cid)
        return InProcessClientProxy(cid, DyadicClient("0").to_client())


def test_client_ids_behave_like_the_list_of_strings() -> None:
    ids = ClientIds(12)
    assert list(ids) == [str(i) for i in range(12)]
    assert ids[3] == "3" and ids[-1] == "11" and list(ids[2:5]) == ["2", "3", "4"]
    assert "11" in ids and "12" not in ids and "01" not in ids and "x" not in ids
    with pytest.raises(IndexError):
        ids[12]


def test_sampling_makes_proxies_for_the_sampled_ids_only() -> None:
    manager = VirtualClientManager(seed=0)
    made = Made()
    manager.attach(ClientIds(1_000_000), made)
    assert manager.num_available() == 1_000_000
    assert made.cids == []
    sampled = manager.sample(100)
    assert len(made.cids) == 100 and len({p.cid for p in sampled}) == 100
    assert all(0 <= int(p.cid) < 1_000_000 for p in sampled)


def test_same_seed_same_samples() -> None:
    def draws(seed: int) -> list[list[str]]:
        manager = VirtualClientManager(seed=seed)
        manager.attach(ClientIds(500), Made())
        return [[p.cid for p in manager.sample(20)] for _ in range(3)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


def test_listed_ids_sample_as_simple_client_manager_does_with_the_same_seed() -> None:
    ids = [f"site-{i}" for i in (3, 1, 2, 10, 7, 5, 4)]
    virtual = VirtualClientManager(seed=11)
    virtual.attach(ids, Made())
    simple = fl.server.SimpleClientManager(seed=11)
    for cid in reversed(ids):
        simple.register(InProcessClientProxy(cid, DyadicClient("0").to_client()))
    for _ in range(3):
        assert [p.cid for p in virtual.sample(3)] == [p.cid for p in simple.sample(3)]


def test_criterion_filters_sampled_ids() -> None:
    class EvenOnly(fl.server.Criterion):
        def select(self, client: ClientProxy) -> bool:
            return int(client.cid) % 2 == 0

    manager = VirtualClientManager(seed=1)
    manager.attach(ClientIds(50), Made())
    chosen = manager.sample(10, criterion=EvenOnly())
    assert len(chosen) == 10 and all(int(p.cid) % 2 == 0 for p in chosen)
    assert manager.sample(26, criterion=EvenOnly()) == []  # only 25 are eligible


def test_too_few_clients_samples_none_and_registering_proxies_is_refused() -> None:
    manager = VirtualClientManager()
    manager.attach(ClientIds(5), Made())
    assert manager.sample(6) == [] and manager.sample(3, min_num_clients=6) == []
    assert manager.wait_for(5) and not manager.wait_for(6)
    with pytest.raises(TypeError, match="SimpleClientManager"):
        manager.register(Made()("1"))


def test_duplicate_listed_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="'b' is listed twice"):
        VirtualClientManager().attach(["a", "b", "c", "b"], Made())

"""Poisoning at a small scale: 10 clients, 2 attackers, a few rounds in one process.

The same task and attackers as bench/robustness.py, which runs the full table over gRPC.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.robustness import (
    SiteClient,
    accuracy,
    make_task,
    site_attack,
    strategies,
)
from fedsilo.common import NDArrays
from fedsilo.server import Server, SimpleClientManager
from fedsilo.simulation import InProcessClientProxy

ROUNDS = 4


def final_accuracy(name: str, attack: str) -> float:
    shards, X_test, y_test = make_task(seed=0)
    manager = SimpleClientManager(seed=0)
    for i, (X, y) in enumerate(shards):
        client = SiteClient(X, y, site_attack(i, attack), seed=i)
        manager.register(InProcessClientProxy(f"site{i}", client.to_client()))
    seen: list[NDArrays] = []

    def evaluate(server_round: int, params: NDArrays, config: dict[str, Any]) -> Any:
        seen.append(params)
        return 0.0, {}

    strategy = strategies(evaluate)[name]()
    Server(client_manager=manager, strategy=strategy).fit(ROUNDS, timeout=30)
    assert len(seen) == ROUNDS + 1
    return accuracy(seen[-1], X_test, y_test)


def test_without_attackers_fedavg_learns() -> None:
    assert final_accuracy("FedAvg", "none") > 0.9


@pytest.mark.parametrize("attack", ["sign-flip", "noise"])
def test_two_attackers_collapse_fedavg(attack: str) -> None:
    assert final_accuracy("FedAvg", attack) < 0.75


@pytest.mark.parametrize("attack", ["sign-flip", "noise"])
@pytest.mark.parametrize("name", ["Krum (f=2)", "MultiKrum (f=2)", "FedMedian",
                                  "FedTrimmedAvg (beta=0.2)", "Bulyan (f=1)"])
def test_robust_rules_hold_against_two_attackers(name: str, attack: str) -> None:
    assert final_accuracy(name, attack) > 0.88


"""A million registered clients cost ids, not objects: 3 rounds of 100 stay under 200 MB."""

from __future__ import annotations

import gc

import numpy as np
import psutil

import fedsilo as fl
import fedsilo.simulation as sim
from tests.simulation.clients import N_PARAMS, dyadic_client_fn, exact_weighted_mean
from tests.simulation.memory import PeakTreeRss

MILLION = 1_000_000
EXTRA_BYTES_ALLOWED = 200 * 2**20
SERVER_BYTES_ALLOWED = 40 * 2**20


def test_a_million_clients_three_rounds_of_a_hundred_within_200_mb() -> None:
    sampled: list[set[str]] = []

    class CountingManager(sim.VirtualClientManager):
        def sample(self, num_clients, min_num_clients=None, criterion=None):  # type: ignore[no-untyped-def]
            chosen = super().sample(num_clients, min_num_clients, criterion)
            sampled.append({p.cid for p in chosen})
            return chosen

    strategy = fl.server.strategy.FedAvg(
        fraction_fit=100 / MILLION, fraction_evaluate=0.0, min_fit_clients=100,
        min_available_clients=100, fit_metrics_aggregation_fn=exact_weighted_mean,
        initial_parameters=fl.common.ndarrays_to_parameters(
            [np.zeros(N_PARAMS, dtype=np.float32)]))
    gc.collect()
    own_baseline = psutil.Process().memory_info().rss
    with PeakTreeRss() as peak:
        history = sim.start_simulation(
            client_fn=dyadic_client_fn, num_clients=MILLION,
            config=fl.server.ServerConfig(num_rounds=3), strategy=strategy,
            client_manager=CountingManager(seed=1), num_workers=2)
    extra = peak.peak - peak.baseline
    # The peak counted the simulation's two worker interpreters beside this process.
    workers = [command for _, _, command in peak.at_peak if "spawn_main" in command]
    assert len(workers) == 2, peak.describe_peak()
    assert [len(s) for s in sampled] == [100, 100, 100]
    assert all(0 <= int(cid) < MILLION for s in sampled for cid in s)
    assert [r for r, _ in history.metrics_distributed_fit["delta"]] == [1, 2, 3]
    assert extra < EXTRA_BYTES_ALLOWED, (
        f"{extra / 2**20:.0f} MB above the baseline of {peak.baseline / 2**20:.0f} MB; at the "
        f"peak:\n{peak.describe_peak()}")
    # Most of that is the two worker interpreters; the server's registry of a million
    # clients, its proxies and the round's model cost the server process little.
    own_extra = peak.own_peak - own_baseline
    assert own_extra < SERVER_BYTES_ALLOWED, f"server grew by {own_extra / 2**20:.0f} MB"

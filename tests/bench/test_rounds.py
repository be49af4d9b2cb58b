"""The round benchmark's own bookkeeping, on real federations of a few processes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bench.rounds import Outcome, Peer, cpu_per_round, expected_after, run_federation


def test_cpu_per_round_leaves_the_first_round_out_and_needs_every_mark() -> None:
    # starts of rounds 1..5: rounds 2..4 took 2 + 3 + 5 s of CPU
    assert cpu_per_round([1.0, 11.0, 13.0, 16.0, 21.0], 5) == pytest.approx(10.0 / 3)
    assert cpu_per_round([1.0, 11.0, 13.0, 16.0], 5) is None  # a mark missing
    assert cpu_per_round([1.0, 2.0], 2) is None  # nothing left after the first round


def test_merged_outcomes_pool_rounds_and_cpu_and_keep_the_higher_peak() -> None:
    final = np.zeros(1)
    first = Outcome([[9.0, 1.0, 3.0]], 100.0, final, [0.5], [1.5])
    second = Outcome([[8.0, 2.0, 4.0]], 120.0, final, [0.7], [1.1])
    both = first.merged(second)
    assert both.median == pytest.approx(2.5)  # of 1, 3, 2, 4: each run's first round left out
    assert both.peak_rss_mb == 120.0
    assert both.cpu == (pytest.approx(0.6), pytest.approx(1.3))


@pytest.mark.parametrize("impl", ["fedsilo", "grpc"])
def test_a_federation_reports_its_rounds_and_cpu(impl: str, tmp_path: Path) -> None:
    peer = Peer(impl, impl, sys.executable)
    n_clients, n_params, rounds = 2, 300_000, 4
    outcome = run_federation(peer, peer, n_clients, n_params, rounds, impl == "fedsilo",
                             tmp_path)
    assert len(outcome.runs) == 1 and len(outcome.runs[0]) == rounds
    assert all(seconds > 0 for seconds in outcome.runs[0])
    assert outcome.cpu is not None
    server_cpu, clients_cpu = outcome.cpu
    # Each round moves 2 x 2 x 1.2 MB through each side: neither side is idle, and no round
    # costs a whole core-minute.
    assert 0 < server_cpu < 60 and 0 < clients_cpu < 60
    if impl == "fedsilo":  # clients that add their weight: the closed form
        np.testing.assert_allclose(outcome.final, expected_after(rounds, n_clients, n_params),
                                   rtol=1e-5)
    else:  # the floor echoes the model and aggregates nothing
        np.testing.assert_array_equal(
            outcome.final, np.random.default_rng(7).standard_normal(n_params, dtype=np.float32))


def test_a_client_that_wrote_no_cpu_marks_leaves_the_cpu_unknown(tmp_path: Path) -> None:
    from bench.rounds import read_cpu_marks

    assert read_cpu_marks(tmp_path / "missing.json") == []
    (tmp_path / "cut.json").write_text("[1.0, 2.")
    assert read_cpu_marks(tmp_path / "cut.json") == []
    assert cpu_per_round(read_cpu_marks(tmp_path / "missing.json"), 5) is None

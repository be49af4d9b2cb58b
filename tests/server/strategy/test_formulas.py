"""Each rule in aggregate.py against its paper's formula on arrays small enough to check by
hand (the expected numbers are worked out in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsilo.server.strategy import aggregate as agg


def one(values: list[float]) -> list[tuple[list[np.ndarray], int]]:
    return [([np.array([v])], 1) for v in values]


def test_median_is_coordinate_wise() -> None:
    results = [([np.array([1.0, 10.0, 3.0])], 5), ([np.array([2.0, 0.0, 3.0])], 1),
               ([np.array([100.0, 5.0, 3.0])], 1)]
    np.testing.assert_array_equal(agg.aggregate_median(results)[0], [2.0, 5.0, 3.0])


def test_trimmed_mean_drops_beta_share_at_each_end() -> None:
    # 5 values, beta 0.2: drop int(0.2 * 5) = 1 low and 1 high -> mean(2, 3, 4) = 3.
    got = agg.aggregate_trimmed_mean(one([100.0, 2.0, 1.0, 4.0, 3.0]), 0.2)
    assert got[0][0] == pytest.approx(3.0)
    # beta 0: the plain (unweighted) mean.
    assert agg.aggregate_trimmed_mean(one([1.0, 2.0, 6.0]), 0.0)[0][0] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="0.5"):
        agg.aggregate_trimmed_mean(one([1.0]), 0.5)


def test_krum_scores_and_choice() -> None:
    # Points 0, 1, 2, 4, 100; f = 1 -> each score sums the n - f - 2 = 2 nearest squared
    # distances: 0 -> 1 + 4 = 5, 1 -> 1 + 1 = 2, 2 -> 1 + 4 = 5, 4 -> 4 + 9 = 13,
    # 100 -> 96^2 + 98^2.
    points = [0.0, 1.0, 2.0, 4.0, 100.0]
    distances = agg.pairwise_squared_distances([[np.array([p])] for p in points])
    np.testing.assert_allclose(agg.krum_scores(distances, 1), [5, 2, 5, 13, 96**2 + 98**2])
    assert agg.aggregate_krum(one(points), 1)[0][0] == 1.0
    # Multi-Krum keeps the 3 lowest scores (1, 0, 2) and averages them by example count.
    results = [([np.array([p])], n) for p, n in zip(points, [2, 1, 1, 1, 1], strict=True)]
    got = agg.aggregate_krum(results, 1, to_keep=3)
    assert got[0][0] == pytest.approx((0 * 2 + 1 * 1 + 2 * 1) / 4)


def test_bulyan_selects_by_krum_then_averages_around_the_median() -> None:
    # n = 7, f = 1: theta = 5 picks, beta = 3 nearest the median. Krum picks 2, then 1,
    # then 3, 0, 4 (ties go to the first); the poisoned 50 and -60 are never picked.
    # Median of {0,1,2,3,4} = 2; the 3 values nearest it are 1, 2, 3 -> mean 2.
    got = agg.aggregate_bulyan(one([0.0, 1.0, 2.0, 3.0, 4.0, 50.0, -60.0]), 1)
    assert got[0][0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="4 \\* num_malicious \\+ 3"):
        agg.aggregate_bulyan(one([0.0] * 6), 1)


def test_bulyan_per_coordinate_mean_of_beta_closest() -> None:
    # n = 3, f = 0: all three picked, beta = 3: the plain mean per coordinate.
    results = [([np.array([0.0, 9.0])], 1), ([np.array([3.0, 0.0])], 1),
               ([np.array([6.0, 3.0])], 1)]
    np.testing.assert_allclose(agg.aggregate_bulyan(results, 0)[0], [3.0, 4.0])


def test_qffl_step() -> None:
    # w = 1, w_1 = 0, F = 1, q = 1, lr = 0.1 -> L = 10, dw = 10, D = 10,
    # h = 1 * 1 * 100 + 10 = 110, w' = 1 - 10 / 110.
    delta, h = agg.qffl_client_step([np.array([1.0])], [np.array([0.0])], 1.0, 1.0, 0.1)
    assert delta[0][0] == pytest.approx(10.0) and h == pytest.approx(110.0)
    got = agg.aggregate_qffl([np.array([1.0])], [delta], [h])
    assert got[0][0] == pytest.approx(1 - 10 / 110)
    # q = 0: D = dw = 10, h = L = 10 -> w' = 0, the client's model (one client: FedAvg).
    delta, h = agg.qffl_client_step([np.array([1.0])], [np.array([0.0])], 1.0, 0.0, 0.1)
    got = agg.aggregate_qffl([np.array([1.0])], [delta], [h])
    assert got[0][0] == pytest.approx(0.0, abs=1e-9)


def test_fedavgm_momentum_over_two_rounds() -> None:
    # Round 1: g = 1 - 0.5 = 0.5, v = 0.5, w = 1 - 0.5 = 0.5.
    w, v = agg.fedavgm_step([np.array([1.0])], [np.array([0.5])], None, 1.0, 0.9)
    assert w[0][0] == pytest.approx(0.5) and v is not None and v[0][0] == pytest.approx(0.5)
    # Round 2: g = 0.5 - 0.4 = 0.1, v = 0.9 * 0.5 + 0.1 = 0.55, w = 0.5 - 0.55 = -0.05.
    w, v = agg.fedavgm_step(w, [np.array([0.4])], v, 1.0, 0.9)
    assert w[0][0] == pytest.approx(-0.05) and v is not None and v[0][0] == pytest.approx(0.55)
    # No momentum, lr 0.5: w = 1 - 0.5 * (1 - 0.5) = 0.75.
    w, v = agg.fedavgm_step([np.array([1.0])], [np.array([0.5])], None, 0.5, 0.0)
    assert w[0][0] == pytest.approx(0.75) and v is None


def test_fedadagrad_step() -> None:
    # delta = 0.2, m = 0.2, v = 0.04, w = 0 + 0.1 * 0.2 / 0.2 = 0.1.
    w, m, v = agg.fedadagrad_step([np.array([0.0])], [np.array([0.2])], None, None,
                                  eta=0.1, beta_1=0.0, tau=0.0)
    assert (w[0][0], m[0][0], v[0][0]) == pytest.approx((0.1, 0.2, 0.04))


def test_fedadam_step_with_bias_correction() -> None:
    # m = 0.1 * 0.2 = 0.02, v = 0.01 * 0.04 = 4e-4, step = 0.1 sqrt(1 - .99^2) / (1 - .9^2),
    # w = step * 0.02 / 0.02.
    w, m, v = agg.fedadam_step([np.array([0.0])], [np.array([0.2])], None, None,
                               server_round=1, eta=0.1, beta_1=0.9, beta_2=0.99, tau=0.0)
    step = 0.1 * math.sqrt(1 - 0.99**2) / (1 - 0.9**2)
    assert (w[0][0], m[0][0], v[0][0]) == pytest.approx((step, 0.02, 4e-4))


def test_fedyogi_step() -> None:
    # v = 0 - 0.01 * 0.04 * sign(0 - 0.04) = 4e-4, m = 0.02, w = 0.01 * 0.02 / 0.02 = 0.01.
    w, m, v = agg.fedyogi_step([np.array([0.0])], [np.array([0.2])], None, None,
                               eta=0.01, beta_1=0.9, beta_2=0.99, tau=0.0)
    assert (w[0][0], m[0][0], v[0][0]) == pytest.approx((0.01, 0.02, 4e-4))
    # A v above delta^2 shrinks: v = 1 - 0.01 * 0.04 * 1.
    _, _, v = agg.fedyogi_step([np.array([0.0])], [np.array([0.2])], [np.array([0.0])],
                               [np.array([1.0])], eta=0.01, beta_1=0.9, beta_2=0.99, tau=0.0)
    assert v[0][0] == pytest.approx(1 - 4e-4)


def test_clipping_scales_to_the_norm_and_keeps_small_updates() -> None:
    # [3, 4] has norm 5; clipped to 1 -> [0.6, 0.8].
    clipped, was = agg.clip_update([np.array([3.0]), np.array([4.0])], 1.0)
    assert was and clipped[0][0] == pytest.approx(0.6) and clipped[1][0] == pytest.approx(0.8)
    kept, was = agg.clip_update([np.array([0.3, 0.4])], 1.0)
    assert not was
    np.testing.assert_array_equal(kept[0], [0.3, 0.4])


def test_noise_and_adaptive_clipping_formulas() -> None:
    assert agg.gaussian_noise_stddev(2.0, 0.5, 10) == pytest.approx(0.1)  # z C / m
    # All clipped (c = 1), target 0.5: C exp(lr (c - gamma)) = exp(0.2 * 0.5), C grows;
    # none clipped: C shrinks by exp(-0.1).
    assert agg.adaptive_clip_norm_step(1.0, 1.0, 0.5, 0.2) == pytest.approx(math.exp(0.1))
    assert agg.adaptive_clip_norm_step(1.0, 0.0, 0.5, 0.2) == pytest.approx(math.exp(-0.1))
    # m = 100 -> sigma_b = 5; z_delta = (1 - (2 * 5)^-2)^(-1/2)
    sigma_b, z_delta = agg.adaptive_noise_split(1.0, 100, None)
    assert sigma_b == 5.0 and z_delta == pytest.approx((1 - 0.01) ** -0.5)
    with pytest.raises(ValueError, match="clipped_count_stddev"):
        agg.adaptive_noise_split(1.0, 10, None)  # sigma_b = 0.5 is too small for z = 1

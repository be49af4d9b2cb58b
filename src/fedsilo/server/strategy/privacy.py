"""Privacy accounting for the differential-privacy wrappers: RDP of the sampled Gaussian.

Each round releases the mean of clipped client updates plus Gaussian noise of multiplier
``z`` (noise std over sensitivity) from a sample of the population drawn with rate ``q``.
Its Renyi-DP at order ``alpha`` follows Mironov, Talwar and Zhang (2019), "Renyi
Differential Privacy of the Sampled Gaussian Mechanism": ``log A_alpha / (alpha - 1)``, with
``A_alpha`` the closed sum of Section 3.2 for integer orders and the two-series form of
Section 3.3 for fractional ones. RDP adds up over rounds; the smallest ``epsilon`` over all
orders for a given ``delta`` is reported, converted with Canonne, Kamath and Steinke
(2020), Proposition 12 (tighter than the classical ``rdp + log(1/delta) / (alpha - 1)``,
which :func:`epsilon_from_rdp` also offers).

The analysis assumes Poisson sampling with rate ``q``; a fixed-size sample of ``m`` out of
``N`` is accounted with ``q = m / N``, the usual approximation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_ORDERS",
    "RdpAccountant",
    "epsilon_from_rdp",
    "sampled_gaussian_rdp",
]

DEFAULT_ORDERS: tuple[float, ...] = (
    tuple(1 + x / 10.0 for x in range(1, 100)) + tuple(float(a) for a in range(11, 64))
    + (128.0, 256.0, 512.0)
)
"""RDP orders tried when converting to (epsilon, delta): dense near 1, sparse above 64."""


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))


def _log_sub(a: float, b: float) -> float:
    """log(exp(a) - exp(b)) for a >= b."""
    if b == -math.inf:
        return a
    if a < b:
        raise ValueError("log of a negative number in the RDP series")
    if a == b:
        return -math.inf
    return a + math.log1p(-math.exp(b - a))


def _special() -> Any:
    """scipy.special, imported on first use: it weighs ~25 MB in every process that imports
    the strategies (simulation workers, clients), and only the accountant needs it."""
    from scipy import special

    return special


def _log_erfc(x: float) -> float:
    # erfc(x) = 2 Phi(-x sqrt 2); log_ndtr stays accurate far into the tails.
    return math.log(2.0) + float(_special().log_ndtr(-x * math.sqrt(2.0)))


def _log_a_integer(q: float, sigma: float, alpha: int) -> float:
    """log A_alpha = log sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2))."""
    log_a = -math.inf
    for i in range(alpha + 1):
        term = (math.log(_special().binom(alpha, i)) + i * math.log(q)
                + (alpha - i) * math.log1p(-q) + (i * i - i) / (2.0 * sigma**2))
        log_a = _log_add(log_a, term)
    return log_a


def _log_a_fractional(q: float, sigma: float, alpha: float) -> float:
    """log A_alpha for fractional alpha: the sum of the series A_0 and A_1 (Section 3.3)."""
    log_a0, log_a1 = -math.inf, -math.inf
    z0 = sigma**2 * math.log(1.0 / q - 1.0) + 0.5
    i = 0
    while True:
        coef = float(_special().binom(alpha, i))
        log_coef = math.log(abs(coef))
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log1p(-q)
        log_t1 = log_coef + j * math.log(q) + i * math.log1p(-q)
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2.0) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2.0) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2.0 * sigma**2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2.0 * sigma**2) + log_e1
        if coef > 0:
            log_a0, log_a1 = _log_add(log_a0, log_s0), _log_add(log_a1, log_s1)
        else:
            log_a0, log_a1 = _log_sub(log_a0, log_s0), _log_sub(log_a1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30:
            return _log_add(log_a0, log_a1)


def sampled_gaussian_rdp(
    sampling_rate: float, noise_multiplier: float, steps: int, orders: Sequence[float]
) -> npt.NDArray[np.float64]:
    """RDP at each order of ``steps`` compositions of the sampled Gaussian mechanism."""
    if not 0.0 <= sampling_rate <= 1.0:
        raise ValueError(f"sampling_rate must be in [0, 1], got {sampling_rate}")
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be non-negative, got {noise_multiplier}")
    values = []
    for alpha in orders:
        if alpha <= 1:
            raise ValueError(f"RDP orders must exceed 1, got {alpha}")
        if sampling_rate == 0:
            values.append(0.0)
        elif noise_multiplier == 0 or math.isinf(alpha):
            values.append(math.inf)
        elif sampling_rate == 1.0:
            values.append(alpha / (2.0 * noise_multiplier**2))
        elif float(alpha).is_integer():
            values.append(_log_a_integer(sampling_rate, noise_multiplier, int(alpha))
                          / (alpha - 1))
        else:
            values.append(_log_a_fractional(sampling_rate, noise_multiplier, alpha)
                          / (alpha - 1))
    return np.asarray(values) * steps


def epsilon_from_rdp(
    orders: Sequence[float],
    rdp: Sequence[float] | npt.NDArray[np.float64],
    delta: float,
    *,
    conversion: Literal["improved", "classic"] = "improved",
) -> tuple[float, float]:
    """The smallest epsilon over ``orders`` for ``delta``, and the order that gives it.

    ``classic``: ``eps = rdp + log(1/delta) / (alpha - 1)`` (Mironov 2017, Prop. 3), what the
    moments accountant of Abadi et al. (2016) computes. ``improved``: ``eps = rdp +
    log1p(-1/alpha) - (log delta + log alpha) / (alpha - 1)`` (Canonne et al. 2020).
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    best, best_order = math.inf, math.nan
    for alpha, value in zip(orders, rdp, strict=True):
        if math.isinf(value):
            continue
        if conversion == "classic":
            eps = value + math.log(1.0 / delta) / (alpha - 1)
        else:
            eps = (value + math.log1p(-1.0 / alpha)
                   - (math.log(delta) + math.log(alpha)) / (alpha - 1))
        if eps < best:
            best, best_order = max(0.0, eps), alpha
    return best, best_order


@lru_cache(maxsize=64)
def _cached_rdp(
    sampling_rate: float, noise_multiplier: float, orders: tuple[float, ...]
) -> tuple[float, ...]:
    # Rounds repeat the same (q, z): compute each setting once.
    return tuple(sampled_gaussian_rdp(sampling_rate, noise_multiplier, 1, orders))


class RdpAccountant:
    """Adds up the RDP of every noisy round and converts it to epsilon on demand.

    The history of ``(sampling_rate, noise_multiplier, steps)`` is the whole state, so a
    checkpoint of it restores the accountant exactly.
    """

    def __init__(self, orders: Sequence[float] = DEFAULT_ORDERS) -> None:
        self.orders = tuple(orders)
        self.history_: list[tuple[float, float, int]] = []
        self._rdp = np.zeros(len(self.orders))

    def step(self, *, noise_multiplier: float, sampling_rate: float, steps: int = 1) -> None:
        """Record ``steps`` releases with the given noise and sampling rate."""
        one_step = _cached_rdp(float(sampling_rate), float(noise_multiplier), self.orders)
        self._rdp = self._rdp + np.asarray(one_step) * steps
        self.history_.append((float(sampling_rate), float(noise_multiplier), int(steps)))

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta`` (0 before any step)."""
        if not self.history_:
            return 0.0
        return epsilon_from_rdp(self.orders, self._rdp, delta)[0]

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(entry) for entry in self.history_]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history_ = []
        self._rdp = np.zeros(len(self.orders))
        for q, z, steps in state.get("history", []):
            self.step(noise_multiplier=z, sampling_rate=q, steps=int(steps))

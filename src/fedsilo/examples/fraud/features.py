"""Model inputs from provider columns: a fixed transform every site applies the same way.

Counts and amounts of money span orders of magnitude, and a logistic regression trained with a
few L-BFGS iterations per round only converges when its inputs are of order one. The usual cure,
a StandardScaler, needs means and deviations estimated from data, and in a federation each site
would estimate its own (so the sites' inputs would no longer mean the same thing) unless the
sites shared their statistics, which tells the others about their data. Instead each feature has
a transform fixed in code: ``log1p`` for counts, money and durations (multiplicative spread
becomes additive), then a shift and a divisor that are round reference values for
provider-level Medicare aggregates, chosen once and never fitted to any site's data. Sites, the
server and the baselines thus apply the identical transform, and nothing about one site's data
reaches another through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedsilo.examples.fraud.data import FEATURES

__all__ = ["SCALING", "FeatureScaling", "scale_features"]


@dataclass(frozen=True)
class FeatureScaling:
    """``(f(x) - center) / scale`` where f is ``log1p`` when ``log`` is set, else identity."""

    log: bool
    center: float
    scale: float

    def apply(self, values: np.ndarray) -> np.ndarray:
        base = np.log1p(values) if self.log else values
        return (base - self.center) / self.scale


SCALING: dict[str, FeatureScaling] = {
    "n_beneficiaries": FeatureScaling(log=True, center=3.8, scale=1.0),
    "n_claims": FeatureScaling(log=True, center=4.7, scale=1.0),
    "n_inpatient_claims": FeatureScaling(log=True, center=2.3, scale=1.0),
    "pct_inpatient_claims": FeatureScaling(log=False, center=0.1, scale=0.1),
    "claims_per_beneficiary": FeatureScaling(log=True, center=1.2, scale=0.25),
    "total_reimbursed": FeatureScaling(log=True, center=11.8, scale=1.25),
    "mean_reimbursed_per_claim": FeatureScaling(log=True, center=7.1, scale=0.75),
    "mean_deductible": FeatureScaling(log=True, center=4.5, scale=0.7),
    "mean_claim_days": FeatureScaling(log=True, center=1.0, scale=0.15),
    "mean_beneficiary_age": FeatureScaling(log=False, center=74.0, scale=3.0),
    "pct_chronic": FeatureScaling(log=False, center=0.55, scale=0.1),
    "pct_deceased_beneficiaries": FeatureScaling(log=False, center=0.015, scale=0.025),
    "n_physicians": FeatureScaling(log=True, center=2.1, scale=0.75),
    "n_diagnosis_codes": FeatureScaling(log=True, center=6.0, scale=0.9),
    "mean_diagnoses_per_claim": FeatureScaling(log=False, center=4.0, scale=1.0),
}

assert list(SCALING) == FEATURES, "SCALING must list FEATURES in order"


def scale_features(df: pd.DataFrame) -> np.ndarray:
    """The model's input matrix for ``df``: one row per provider, columns in FEATURES order."""
    columns = [SCALING[name].apply(df[name].to_numpy(dtype=float)) for name in FEATURES]
    return np.column_stack(columns)

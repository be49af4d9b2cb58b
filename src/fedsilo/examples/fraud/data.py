"""Provider-level Medicare claims aggregates with a fraud label: a synthetic stand-in.

The public CMS-based fraud data (about 5,400 providers, under 10% of them labelled fraudulent)
is not downloaded at run time, so :func:`generate_providers` draws a dataset with the same
shape: one row per provider, claims summarised over a year. :func:`load_providers_csv` reads
real or generated data from a CSV file and checks it against the schema below;
:mod:`.claims` builds the same table from the public dataset's raw claims files.

Columns (one row per provider):

============================  =========================================================
provider_id                   identifier, ``PRV`` followed by five digits
state                         two-letter US state of the provider's practice
specialty                     main specialty of the provider's attending physicians
n_beneficiaries               distinct Medicare beneficiaries with a claim (count)
n_claims                      inpatient plus outpatient claims filed (count)
n_inpatient_claims            claims for hospital admissions (count)
pct_inpatient_claims          n_inpatient_claims / n_claims (share, 0-1)
claims_per_beneficiary        n_claims / n_beneficiaries
total_reimbursed              Medicare reimbursement over all claims (USD)
mean_reimbursed_per_claim     total_reimbursed / n_claims (USD)
mean_deductible               mean deductible paid per claim (USD)
mean_claim_days               mean days from claim start to end; admissions last longer
mean_beneficiary_age          mean age of the beneficiaries at the claim (years)
pct_chronic                   share of beneficiaries with two or more chronic conditions
pct_deceased_beneficiaries    share of beneficiaries with a recorded date of death
n_physicians                  distinct attending physicians on the claims (count)
n_diagnosis_codes             distinct diagnosis codes on the claims (count)
mean_diagnoses_per_claim      mean number of diagnosis codes per claim (1-10)
is_fraud                      1 when the provider was found fraudulent, else 0
============================  =========================================================

How the data is drawn, and why (the tables are in :mod:`.populations`). States belong to six
regions whose providers differ in cost level, beneficiary age and health, admission rates and
fraud rate, so sites made of different states hold non-identical data; specialties differ in
billing pattern and fraud rate. A fraudulent provider follows one scheme whose
footprint a linear model can see, but only partly: upcoding (dearer claims, more diagnoses),
phantom billing (more claims per beneficiary), inpatient padding (more and longer
admissions), billing for deceased beneficiaries, or a referral ring (many attending
physicians). Each provider's scheme is applied with a random intensity, some near zero, so
some fraud stays invisible. Schemes cluster by region, as organised fraud does, so a model
trained on one region's providers learns that region's schemes and misses the others, which is
what a federation over all regions can fix. Fraudulent providers are also somewhat larger,
a signal every region shares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fedsilo.examples.fraud.populations import REGIONS, SCHEMES, SPECIALTIES, STATES

__all__ = [
    "COLUMNS",
    "FEATURES",
    "LABEL",
    "ProviderSchemaError",
    "generate_providers",
    "load_providers_csv",
]

LABEL = "is_fraud"

# Numeric model inputs, in the order of the model's coefficients.
FEATURES: list[str] = [
    "n_beneficiaries",
    "n_claims",
    "n_inpatient_claims",
    "pct_inpatient_claims",
    "claims_per_beneficiary",
    "total_reimbursed",
    "mean_reimbursed_per_claim",
    "mean_deductible",
    "mean_claim_days",
    "mean_beneficiary_age",
    "pct_chronic",
    "pct_deceased_beneficiaries",
    "n_physicians",
    "n_diagnosis_codes",
    "mean_diagnoses_per_claim",
]

COLUMNS: list[str] = ["provider_id", "state", "specialty", *FEATURES, LABEL]

# Claim costs and durations at cost index 1.
_INPATIENT_COST = 9_500.0  # USD per admission at cost index 1
_OUTPATIENT_COST = 290.0  # USD per outpatient claim at cost index 1
_INPATIENT_DEDUCTIBLE = 1_068.0  # USD, the Part A deductible per admission
_INPATIENT_DAYS = 5.5
_OUTPATIENT_DAYS = 1.4


class ProviderSchemaError(ValueError):
    """A providers table does not match the schema; the message names the offending columns."""


def generate_providers(n_providers: int = 5400, seed: int = 0) -> pd.DataFrame:
    """Draw ``n_providers`` providers with the columns of :data:`COLUMNS`.

    The same ``seed`` gives the same table; about 10% of providers are fraudulent.
    """
    if n_providers < 1:
        raise ValueError(f"n_providers must be at least 1, got {n_providers}")
    rng = np.random.default_rng(seed)
    n = n_providers

    states = _pick(rng, [s.code for s in STATES], [s.weight for s in STATES], n)
    by_code = {s.code: s for s in STATES}
    region = [REGIONS[by_code[code].region] for code in states]
    cost_index = np.array([by_code[code].cost_index for code in states])
    specialties = _pick(rng, list(SPECIALTIES), [p.weight for p in SPECIALTIES.values()], n)
    spec = [SPECIALTIES[name] for name in specialties]

    def per_region(field: str) -> np.ndarray:
        return np.array([getattr(r, field) for r in region])

    def per_specialty(field: str) -> np.ndarray:
        return np.array([getattr(s, field) for s in spec])

    fraud_p = np.clip(per_region("fraud_rate") * per_specialty("fraud_factor"), 0.0, 0.9)
    is_fraud = rng.random(n) < fraud_p
    scheme_cdf = np.cumsum([r.scheme_mix for r in region], axis=1)
    scheme = np.minimum((rng.random((n, 1)) > scheme_cdf).sum(axis=1), len(SCHEMES) - 1)
    # How strongly a fraudulent provider's scheme shows; some barely show at all.
    intensity = np.where(is_fraud, rng.beta(2.5, 1.1, n), 0.0)

    def boost(name: str) -> np.ndarray:
        return np.where(scheme == SCHEMES.index(name), intensity, 0.0)

    n_beneficiaries = np.maximum(
        1, np.round(rng.lognormal(np.log(45.0) + 0.6 * is_fraud, 0.85, n))).astype(int)
    cpb = rng.lognormal(np.log(per_specialty("claims_per_beneficiary")), 0.28, n)
    cpb *= 1.0 + 2.5 * boost("phantom_billing")
    n_claims = np.maximum(1, np.round(n_beneficiaries * cpb)).astype(int)

    inpatient_share = per_specialty("inpatient_share") * per_region("inpatient_factor")
    inpatient_share = inpatient_share * rng.lognormal(0.0, 0.35, n)
    inpatient_share *= 1.0 + 2.5 * boost("inpatient_padding")
    n_inpatient = rng.binomial(n_claims, np.clip(inpatient_share, 0.0, 0.85))
    pct_inpatient = n_inpatient / n_claims

    price = cost_index * per_specialty("cost_factor") * rng.lognormal(0.0, 0.22, n)
    price *= 1.0 + 2.0 * boost("upcoding")
    mean_reimbursed = price * (pct_inpatient * _INPATIENT_COST
                               + (1.0 - pct_inpatient) * _OUTPATIENT_COST)
    total_reimbursed = n_claims * mean_reimbursed

    outpatient_deductible = rng.lognormal(np.log(12.0), 0.5, n)
    mean_deductible = (pct_inpatient * _INPATIENT_DEDUCTIBLE * rng.uniform(0.85, 1.0, n)
                       + (1.0 - pct_inpatient) * outpatient_deductible)

    stay = _INPATIENT_DAYS * rng.lognormal(0.0, 0.2, n)
    stay *= 1.0 + 1.2 * boost("inpatient_padding")
    mean_claim_days = (pct_inpatient * stay
                       + (1.0 - pct_inpatient) * _OUTPATIENT_DAYS * rng.lognormal(0.0, 0.25, n))

    age = rng.normal(per_region("age_mean"), 2.8, n) + 2.5 * boost("deceased_billing")
    chronic = np.clip(rng.normal(per_region("chronic_mean"), 0.09, n), 0.02, 0.98)
    deceased_rate = 0.012 * rng.lognormal(0.0, 0.6, n) + 0.15 * boost("deceased_billing")
    n_deceased = rng.binomial(n_beneficiaries, np.clip(deceased_rate, 0.0, 1.0))
    pct_deceased = n_deceased / n_beneficiaries

    physicians_per_claim = rng.lognormal(np.log(0.05), 0.35, n)
    physicians_per_claim *= 1.0 + 4.0 * boost("referral_ring")
    n_physicians = np.maximum(1, np.round(1.0 + n_claims * physicians_per_claim)).astype(int)

    dx_per_claim = per_specialty("diagnoses_per_claim") * rng.lognormal(0.0, 0.15, n)
    dx_per_claim = np.clip(dx_per_claim * (1.0 + 0.6 * boost("upcoding")), 1.0, 10.0)
    n_dx = np.round(np.minimum(n_claims * dx_per_claim,
                               6.0 * np.power(n_claims * dx_per_claim, 0.72)))
    n_dx = np.maximum(1, n_dx).astype(int)

    first_id = 51001 + int(rng.integers(0, 1000))
    return pd.DataFrame({
        "provider_id": [f"PRV{first_id + i:05d}" for i in range(n)],
        "state": states,
        "specialty": specialties,
        "n_beneficiaries": n_beneficiaries,
        "n_claims": n_claims,
        "n_inpatient_claims": n_inpatient.astype(int),
        "pct_inpatient_claims": pct_inpatient,
        "claims_per_beneficiary": n_claims / n_beneficiaries,
        "total_reimbursed": np.round(total_reimbursed, 2),
        "mean_reimbursed_per_claim": np.round(mean_reimbursed, 2),
        "mean_deductible": np.round(mean_deductible, 2),
        "mean_claim_days": mean_claim_days,
        "mean_beneficiary_age": age,
        "pct_chronic": chronic,
        "pct_deceased_beneficiaries": pct_deceased,
        "n_physicians": n_physicians,
        "n_diagnosis_codes": n_dx,
        "mean_diagnoses_per_claim": dx_per_claim,
        LABEL: is_fraud.astype(int),
    }, columns=COLUMNS)


def load_providers_csv(path: str | Path) -> pd.DataFrame:
    """Read a providers table from ``path`` and check it against :data:`COLUMNS`.

    Raises :class:`ProviderSchemaError` naming missing columns, non-numeric feature columns,
    missing values and labels other than 0 and 1.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no providers CSV at {path}")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ProviderSchemaError(f"{path} is not a readable CSV file: {exc}") from exc
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ProviderSchemaError(
            f"{path} lacks the columns {', '.join(missing)}; expected columns: "
            f"{', '.join(COLUMNS)}")
    not_numeric = [c for c in [*FEATURES, LABEL] if not pd.api.types.is_numeric_dtype(df[c])]
    if not_numeric:
        raise ProviderSchemaError(
            f"{path}: columns {', '.join(not_numeric)} must hold numbers only")
    with_gaps = [c for c in COLUMNS if df[c].isna().any()]
    if with_gaps:
        raise ProviderSchemaError(f"{path}: columns {', '.join(with_gaps)} have missing values")
    if not df[LABEL].isin([0, 1]).all():
        raise ProviderSchemaError(f"{path}: column {LABEL} must hold only 0 and 1")
    if (df[FEATURES] < 0).to_numpy().any():
        negative = [c for c in FEATURES if (df[c] < 0).any()]
        raise ProviderSchemaError(
            f"{path}: columns {', '.join(negative)} have negative values")
    df = df[COLUMNS].copy()
    df[LABEL] = df[LABEL].astype(int)
    df["provider_id"] = df["provider_id"].astype(str)
    df["state"] = df["state"].astype(str)
    df["specialty"] = df["specialty"].astype(str)
    return df


def _pick(rng: np.random.Generator, names: list[str], weights: list[float], n: int) -> list[str]:
    p = np.asarray(weights, dtype=float)
    return [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]

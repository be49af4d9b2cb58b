"""Generated files in the raw claims layout, for tests and the aggregation benchmark.

:func:`write_claims_files` writes the four files of :mod:`.claims` with every column of the
public layout, at any size (``python -m fedsilo.examples.fraud.claims_fixture DIR --scale S``
from a shell) (the real training files have 5,410 providers, 138,556
beneficiaries, 40,474 inpatient and 517,737 outpatient claims). Fraudulent providers file
more claims per beneficiary, dearer ones, and more admissions, so a model has something to
find; the figures are plausible, not estimates.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedsilo.examples.fraud.claims import CHRONIC_COLUMNS, DIAGNOSIS_COLUMNS

__all__ = ["FULL_SIZE", "ClaimsFixtureSize", "scaled", "write_claims_files"]

_PROCEDURE_COLUMNS = tuple(f"ClmProcedureCode_{i}" for i in range(1, 7))
_CLAIMS_YEAR = np.datetime64("2009-01-01")


@dataclass(frozen=True)
class ClaimsFixtureSize:
    """How many rows each file gets."""

    providers: int
    beneficiaries: int
    inpatient: int
    outpatient: int


FULL_SIZE = ClaimsFixtureSize(providers=5410, beneficiaries=138_556, inpatient=40_474,
                              outpatient=517_737)


def scaled(scale: float) -> ClaimsFixtureSize:
    """:data:`FULL_SIZE` times ``scale``, at least 10 rows a file."""
    return ClaimsFixtureSize(**{f.name: max(10, round(getattr(FULL_SIZE, f.name) * scale))
                                for f in dataclasses.fields(ClaimsFixtureSize)})


def write_claims_files(directory: str | Path, size: ClaimsFixtureSize, seed: int = 0,
                       *, fraud_rate: float = 0.094, n_states: int = 52) -> dict[str, Path]:
    """Write ``Train-fixture.csv`` and its three companions into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_prv, n_bene = size.providers, size.beneficiaries
    providers = np.array([f"PRV{51001 + i}" for i in range(n_prv)])
    fraud = rng.random(n_prv) < fraud_rate
    # Each provider draws its beneficiaries from a home state's pool, mostly.
    home_state = rng.integers(1, n_states + 1, n_prv)

    bene_ids = np.array([f"BENE{11001 + i}" for i in range(n_bene)])
    bene_state = rng.integers(1, n_states + 1, n_bene)
    dob = _CLAIMS_YEAR - (rng.normal(73.0, 12.0, n_bene).clip(26, 100) * 365.25).astype(
        "timedelta64[D]")
    dead = rng.random(n_bene) < 0.01
    dod = np.where(dead, _dates(rng.integers(300, 365, n_bene)), "")
    chronic = {c: np.where(rng.random(n_bene) < 0.12, 1, 2) for c in CHRONIC_COLUMNS}
    beneficiaries = pd.DataFrame({
        "BeneID": bene_ids, "DOB": pd.to_datetime(dob).strftime("%Y-%m-%d"), "DOD": dod,
        "Gender": rng.integers(1, 3, n_bene), "Race": rng.choice([1, 2, 3, 5], n_bene),
        "RenalDiseaseIndicator": np.where(rng.random(n_bene) < 0.15, "Y", "0"),
        "State": bene_state, "County": rng.integers(0, 999, n_bene),
        "NoOfMonths_PartACov": 12, "NoOfMonths_PartBCov": 12, **chronic,
        "IPAnnualReimbursementAmt": rng.integers(0, 30_000, n_bene),
        "IPAnnualDeductibleAmt": rng.integers(0, 2_000, n_bene),
        "OPAnnualReimbursementAmt": rng.integers(0, 5_000, n_bene),
        "OPAnnualDeductibleAmt": rng.integers(0, 1_000, n_bene),
    })
    # Beneficiaries sorted by state: state s holds order[offset[s]:offset[s] + count[s]].
    order = np.argsort(bene_state, kind="stable")
    count = np.bincount(bene_state, minlength=n_states + 1)
    offset = np.r_[0, np.cumsum(count)[:-1]]

    # Claims go to providers in proportion to a size that fraud inflates.
    weight = rng.lognormal(0.0, 1.0, n_prv) * np.where(fraud, 2.0, 1.0)

    def claims(n: int, inpatient: bool) -> pd.DataFrame:
        w = weight * np.where(fraud, 1.5, 1.0) if inpatient else weight
        # Every provider files at least one outpatient claim; the rest are drawn by weight.
        if inpatient:
            owner = rng.choice(n_prv, n, p=w / w.sum())
        else:
            owner = np.r_[np.arange(n_prv), rng.choice(n_prv, n - n_prv, p=w / w.sum())]
        state = home_state[owner]
        local = (rng.random(n) < 0.85) & (count[state] > 0)
        in_state = order[np.minimum(offset[state] + (rng.random(n) * count[state]).astype(int),
                                    n_bene - 1)]
        bene = np.where(local, in_state, rng.integers(0, n_bene, n))
        start_day = rng.integers(0, 330, n)
        stay = rng.integers(1, 15, n) if inpatient else rng.choice([0, 0, 0, 1, 2], n)
        price = (9_000.0 if inpatient else 300.0) * rng.lognormal(0.0, 0.5, n)
        price *= np.where(fraud[owner], 1.2, 1.0)
        n_dx = rng.integers(1, 11, n)
        frame = {
            "BeneID": bene_ids[bene],
            "ClaimID": "",
            "ClaimStartDt": _dates(start_day),
            "ClaimEndDt": _dates(start_day + stay),
            "Provider": providers[owner],
            "InscClaimAmtReimbursed": np.round(price, -1).astype(int),
            "AttendingPhysician": [f"PHY{330000 + o * 5 + k}" for o, k in
                                   zip(owner, rng.integers(0, 5, n), strict=True)],
            "OperatingPhysician": np.where(rng.random(n) < 0.2, "PHY400001", ""),
            "OtherPhysician": "",
        }
        if inpatient:
            frame["AdmissionDt"] = frame["ClaimStartDt"]
            frame["ClmAdmitDiagnosisCode"] = "V5789"
            frame["DeductibleAmtPaid"] = np.where(rng.random(n) < 0.02, "", "1068")
            frame["DischargeDt"] = frame["ClaimEndDt"]
            frame["DiagnosisGroupCode"] = rng.integers(1, 999, n)
        codes = rng.integers(1000, 1400, (n, len(DIAGNOSIS_COLUMNS))).astype(str)
        for k, column in enumerate(DIAGNOSIS_COLUMNS):
            frame[column] = np.where(k < n_dx, codes[:, k], "")
        for column in _PROCEDURE_COLUMNS:
            frame[column] = ""
        if not inpatient:
            frame["DeductibleAmtPaid"] = rng.choice([0, 0, 0, 10, 40], n)
            frame["ClmAdmitDiagnosisCode"] = ""
        return pd.DataFrame(frame)

    inpatient = claims(size.inpatient, True)
    outpatient = claims(size.outpatient, False)
    inpatient["ClaimID"] = [f"CLM{10000 + i}" for i in range(len(inpatient))]
    outpatient["ClaimID"] = [f"CLM{10000 + len(inpatient) + i}" for i in range(len(outpatient))]
    labels = pd.DataFrame({"Provider": providers,
                           "PotentialFraud": np.where(fraud, "Yes", "No")})
    paths = {
        "labels": directory / "Train-fixture.csv",
        "beneficiaries": directory / "Train_Beneficiarydata-fixture.csv",
        "inpatient": directory / "Train_Inpatientdata-fixture.csv",
        "outpatient": directory / "Train_Outpatientdata-fixture.csv",
    }
    for kind, frame in (("labels", labels), ("beneficiaries", beneficiaries),
                        ("inpatient", inpatient), ("outpatient", outpatient)):
        frame.to_csv(paths[kind], index=False)
    return paths


def _dates(day_of_year: np.ndarray) -> np.ndarray:
    days = (_CLAIMS_YEAR + np.asarray(day_of_year).astype("timedelta64[D]"))
    return np.datetime_as_string(days, unit="D")


def main(argv: list[str] | None = None) -> None:
    """``python -m fedsilo.examples.fraud.claims_fixture DIR [--scale S] [--seed N]``."""
    parser = argparse.ArgumentParser(
        description="Write generated files in the raw claims layout into DIR.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the real row counts (default 1: full size)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 10:
        parser.error("--scale must be above 0 and at most 10")
    paths = write_claims_files(args.directory.resolve(), scaled(args.scale), seed=args.seed)
    for path in paths.values():
        print(path)


if __name__ == "__main__":
    main()

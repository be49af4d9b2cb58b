"""The public CMS-derived provider fraud files, aggregated into the example's provider table.

The widely used provider fraud dataset comes as four CSV files, recognised here by their
columns, whatever their names:

- labels (``Train-*.csv``): ``Provider``, ``PotentialFraud`` (``Yes`` or ``No``);
- beneficiaries (``Train_Beneficiarydata-*.csv``): ``BeneID``, ``DOB``, ``DOD``, ``State``,
  ``ChronicCond_*`` (1 means the condition is present; 2, or 0, means it is not) and more;
- inpatient claims (``Train_Inpatientdata-*.csv``): ``BeneID``, ``ClaimID``,
  ``ClaimStartDt``, ``ClaimEndDt``, ``Provider``, ``InscClaimAmtReimbursed``,
  ``AttendingPhysician``, ``DeductibleAmtPaid``, ``ClmDiagnosisCode_1`` to ``_10``,
  ``AdmissionDt``, ``DischargeDt`` and more;
- outpatient claims (``Train_Outpatientdata-*.csv``): the same without the admission fields.

Dates are ``YYYY-MM-DD``. Each provider of the labels file becomes one row of
:data:`~fedsilo.examples.fraud.data.COLUMNS`; its claims are its inpatient and outpatient
claims together, and its beneficiaries the distinct ``BeneID`` on them:

============================  ==============================================================
provider_id                   ``Provider``
state                         the most common ``State`` among the provider's beneficiaries
                              (each beneficiary counted once; a tie goes to the code that
                              sorts first as text)
specialty                     ``unknown``: the files do not record it
n_beneficiaries               distinct ``BeneID`` on its claims
n_claims                      its inpatient plus outpatient claims
n_inpatient_claims            its inpatient claims
pct_inpatient_claims          n_inpatient_claims / n_claims
claims_per_beneficiary        n_claims / n_beneficiaries
total_reimbursed              sum of ``InscClaimAmtReimbursed``
mean_reimbursed_per_claim     total_reimbursed / n_claims
mean_deductible               mean ``DeductibleAmtPaid`` per claim; a blank counts as 0
mean_claim_days               mean of ``ClaimEndDt - ClaimStartDt`` in days, plus one (a
                              same-day claim lasts one day); for an admission this is the stay
mean_beneficiary_age          mean over claims of the beneficiary's age at ``ClaimStartDt``
                              (days since ``DOB`` / 365.25)
pct_chronic                   share of its beneficiaries with two or more ``ChronicCond_*``
pct_deceased_beneficiaries    share of its beneficiaries with a ``DOD``
n_physicians                  distinct ``AttendingPhysician`` on its claims (blanks ignored)
n_diagnosis_codes             distinct codes in ``ClmDiagnosisCode_1..10`` on its claims
mean_diagnoses_per_claim      mean number of non-blank ``ClmDiagnosisCode_1..10`` per claim
is_fraud                      1 for ``PotentialFraud`` ``Yes``, 0 for ``No``
============================  ==============================================================

Bad data stops the aggregation with a :class:`ClaimsDataError` whose one-line message names
the file, the column and the first bad line (the header is line 1): a missing column, a
date that does not parse, a label other than Yes/No, an amount that is not a number, a
duplicate claim id (across both claim files), a duplicate provider or beneficiary, a claim
whose beneficiary is not in the beneficiaries file, claims of providers without a label
(counted), and labelled providers without claims (counted).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from fedsilo.examples.fraud.data import COLUMNS, LABEL, ProviderSchemaError, load_providers_csv

__all__ = [
    "BENEFICIARY_COLUMNS",
    "CLAIM_COLUMNS",
    "DIAGNOSIS_COLUMNS",
    "LABEL_COLUMNS",
    "ClaimsDataError",
    "ClaimsFiles",
    "aggregate_claims",
    "find_claims_files",
    "read_provider_data",
    "sha256_of",
]

CHRONIC_COLUMNS = (
    "ChronicCond_Alzheimer", "ChronicCond_Heartfailure", "ChronicCond_KidneyDisease",
    "ChronicCond_Cancer", "ChronicCond_ObstrPulmonary", "ChronicCond_Depression",
    "ChronicCond_Diabetes", "ChronicCond_IschemicHeart", "ChronicCond_Osteoporasis",
    "ChronicCond_rheumatoidarthritis", "ChronicCond_stroke",
)
DIAGNOSIS_COLUMNS = tuple(f"ClmDiagnosisCode_{i}" for i in range(1, 11))
LABEL_COLUMNS = ("Provider", "PotentialFraud")
BENEFICIARY_COLUMNS = ("BeneID", "DOB", "DOD", "State", *CHRONIC_COLUMNS)
CLAIM_COLUMNS = ("BeneID", "ClaimID", "ClaimStartDt", "ClaimEndDt", "Provider",
                 "InscClaimAmtReimbursed", "AttendingPhysician", "DeductibleAmtPaid",
                 *DIAGNOSIS_COLUMNS)
# What tells an inpatient claims file from an outpatient one.
ADMISSION_COLUMNS = ("AdmissionDt", "DischargeDt")

_DATE_FORMAT = "%Y-%m-%d"
_DAYS_PER_YEAR = 365.25
_FIRST_DATA_LINE = 2  # line 1 is the header


# Raises the one-line error for a claim column: (column, rows that are bad, what is wrong).
ClaimFailure = Callable[[str, np.ndarray, str], NoReturn]


class ClaimsDataError(ProviderSchemaError):
    """The raw files are incomplete or hold a bad value; the message names file, column, line."""


@dataclass(frozen=True)
class ClaimsFiles:
    """The four files of the raw layout."""

    labels: Path
    beneficiaries: Path
    inpatient: Path
    outpatient: Path

    def as_dict(self) -> dict[str, Path]:
        return {"labels": self.labels, "beneficiaries": self.beneficiaries,
                "inpatient": self.inpatient, "outpatient": self.outpatient}


def find_claims_files(directory: str | Path) -> ClaimsFiles:
    """Recognise the four files in ``directory`` by their header rows.

    CSV files that are none of the four (the label-less "Unseen" provider list, notes) are
    ignored; two candidates for one kind, or a kind with none, is an error.
    """
    directory = Path(directory)
    found: dict[str, list[Path]] = {"labels": [], "beneficiaries": [], "inpatient": [],
                                    "outpatient": []}
    for path in sorted(directory.glob("*.csv")):
        kind = _kind_of(_header(path))
        if kind is not None:
            found[kind].append(path)
    for kind, paths in found.items():
        if len(paths) > 1:
            raise ClaimsDataError(
                f"{directory} holds {len(paths)} {kind} files ({', '.join(p.name for p in paths)});"
                " keep one set of files in the directory")
    missing = [kind for kind, paths in found.items() if not paths]
    if missing:
        raise ClaimsDataError(
            f"{directory} lacks the {', '.join(missing)} file(s): expected four CSV files with "
            f"the columns of the labels ({', '.join(LABEL_COLUMNS)}), beneficiaries (BeneID, "
            "DOB, ...), inpatient claims (ClaimID, AdmissionDt, ...) and outpatient claims")
    return ClaimsFiles(**{kind: paths[0] for kind, paths in found.items()})


def aggregate_claims(files: ClaimsFiles) -> pd.DataFrame:
    """One row per labelled provider, with the columns of :data:`.data.COLUMNS`."""
    labels = _read(files.labels, LABEL_COLUMNS)
    _check_unique(labels, "Provider", files.labels)
    answer = labels["PotentialFraud"]
    bad = ~answer.isin(["Yes", "No"])
    if bad.any():
        _fail(files.labels, "PotentialFraud", bad, "must be Yes or No, found "
              f"{answer[bad].iloc[0]!r}")

    benes = _read(files.beneficiaries, BENEFICIARY_COLUMNS)
    _check_unique(benes, "BeneID", files.beneficiaries)
    dob = _dates(benes, "DOB", files.beneficiaries, required=True)
    deceased = _dates(benes, "DOD", files.beneficiaries, required=False).notna()
    chronic_count = np.zeros(len(benes), dtype=np.int64)
    for column in CHRONIC_COLUMNS:
        flags = pd.to_numeric(benes[column], errors="coerce")
        bad = ~flags.isin([0, 1, 2])
        if bad.any():
            _fail(files.beneficiaries, column, bad, "must be 1 (present) or 2 or 0 (absent)")
        chronic_count += (flags == 1).to_numpy()
    state = benes["State"].astype(str)
    if benes["State"].isna().any():
        _fail(files.beneficiaries, "State", benes["State"].isna(), "is blank")

    inpatient = _read(files.inpatient, CLAIM_COLUMNS)
    outpatient = _read(files.outpatient, CLAIM_COLUMNS)
    claims = pd.concat([inpatient, outpatient], ignore_index=True)
    is_inpatient = np.r_[np.ones(len(inpatient), bool), np.zeros(len(outpatient), bool)]
    # Where each claim came from, for messages: its file and its line there.
    source = np.r_[np.zeros(len(inpatient), np.int8), np.ones(len(outpatient), np.int8)]
    line = np.r_[np.arange(len(inpatient)), np.arange(len(outpatient))] + _FIRST_DATA_LINE
    claim_files = (files.inpatient, files.outpatient)

    def claim_fail(column: str, bad: np.ndarray, problem: str) -> NoReturn:
        first = int(np.flatnonzero(bad)[0])
        raise ClaimsDataError(f"{claim_files[source[first]]}: column {column}, line "
                              f"{line[first]}: {problem}")

    for column in ("ClaimID", "BeneID", "Provider"):
        blank = claims[column].isna().to_numpy()
        if blank.any():
            claim_fail(column, blank, "is blank")
    duplicate = claims["ClaimID"].duplicated().to_numpy()
    if duplicate.any():
        first = claims["ClaimID"].iloc[int(np.flatnonzero(duplicate)[0])]
        claim_fail("ClaimID", duplicate, f"claim id {first} appears more than once")
    start = _claim_dates(claims, "ClaimStartDt", claim_fail)
    end = _claim_dates(claims, "ClaimEndDt", claim_fail)
    amount = pd.to_numeric(claims["InscClaimAmtReimbursed"], errors="coerce")
    bad = amount.isna().to_numpy() | (amount < 0).to_numpy()
    if bad.any():
        claim_fail("InscClaimAmtReimbursed", bad, "must be a non-negative number")
    deductible = pd.to_numeric(claims["DeductibleAmtPaid"], errors="coerce")
    bad = (deductible.isna() & claims["DeductibleAmtPaid"].notna()).to_numpy() | (
        deductible < 0).to_numpy()
    if bad.any():
        claim_fail("DeductibleAmtPaid", bad, "must be a non-negative number or blank")

    # Providers and beneficiaries as integer codes: every per-provider figure is a bincount.
    provider_ids = labels["Provider"].astype(str).to_numpy()
    provider = pd.Index(provider_ids).get_indexer(claims["Provider"].astype(str))
    unlabelled = provider < 0
    if unlabelled.any():
        n_providers = claims["Provider"][unlabelled].nunique()
        claim_fail("Provider", unlabelled,
                   f"{int(unlabelled.sum())} claims of {n_providers} providers have no label "
                   f"in {files.labels.name} (first: {claims['Provider'][unlabelled].iloc[0]})")
    bene = pd.Index(benes["BeneID"].astype(str)).get_indexer(claims["BeneID"].astype(str))
    if (bene < 0).any():
        claim_fail("BeneID", bene < 0, f"beneficiary {claims['BeneID'][bene < 0].iloc[0]} is "
                   f"not in {files.beneficiaries.name}")
    n = len(labels)
    n_claims = np.bincount(provider, minlength=n)
    if (n_claims == 0).any():
        idle = n_claims == 0
        _fail(files.labels, "Provider", pd.Series(idle),
              f"{int(idle.sum())} labelled providers have no claims "
              f"(first: {provider_ids[idle][0]})")

    def per_provider_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(provider, weights=values, minlength=n)

    # Each (provider, beneficiary) pair once.
    pairs = pd.unique(provider.astype(np.int64) * len(benes) + bene)
    pair_provider, pair_bene = pairs // len(benes), pairs % len(benes)
    n_benes = np.bincount(pair_provider, minlength=n)

    def share_of_benes(flag: np.ndarray) -> np.ndarray:
        return np.bincount(pair_provider, weights=flag[pair_bene].astype(float),
                           minlength=n) / n_benes

    n_inpatient = np.bincount(provider, weights=is_inpatient, minlength=n).astype(np.int64)
    total = per_provider_sum(amount.to_numpy(dtype=float))
    days = (end - start).dt.days.to_numpy(dtype=float) + 1.0
    age = (start - dob.to_numpy()[bene]).dt.days.to_numpy(dtype=float) / _DAYS_PER_YEAR
    diagnoses = claims[list(DIAGNOSIS_COLUMNS)]
    n_dx_on_claim = diagnoses.notna().sum(axis=1).to_numpy(dtype=float)

    table = pd.DataFrame({
        "provider_id": provider_ids,
        "state": _most_common(pair_provider, state.to_numpy()[pair_bene], n),
        "specialty": "unknown",
        "n_beneficiaries": n_benes,
        "n_claims": n_claims,
        "n_inpatient_claims": n_inpatient,
        "pct_inpatient_claims": n_inpatient / n_claims,
        "claims_per_beneficiary": n_claims / n_benes,
        "total_reimbursed": total,
        "mean_reimbursed_per_claim": total / n_claims,
        "mean_deductible": per_provider_sum(deductible.fillna(0.0).to_numpy(dtype=float))
        / n_claims,
        "mean_claim_days": per_provider_sum(days) / n_claims,
        "mean_beneficiary_age": per_provider_sum(age) / n_claims,
        "pct_chronic": share_of_benes(chronic_count >= 2),
        "pct_deceased_beneficiaries": share_of_benes(deceased.to_numpy()),
        "n_physicians": _distinct_per_provider(provider, [claims["AttendingPhysician"]], n),
        "n_diagnosis_codes": _distinct_per_provider(
            provider, [diagnoses[c] for c in DIAGNOSIS_COLUMNS], n),
        "mean_diagnoses_per_claim": per_provider_sum(n_dx_on_claim) / n_claims,
        LABEL: (answer == "Yes").to_numpy(dtype=np.int64),
    }, columns=COLUMNS)
    return table


def read_provider_data(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The provider table from ``path`` and a note of what was read, for the report.

    ``path`` is a provider table in the schema of :mod:`.data` (a CSV file) or a directory
    holding the four raw files. The note says which layout it was and gives each file's
    path and SHA-256.
    """
    path = Path(path)
    if path.is_dir():
        files = find_claims_files(path)
        table = aggregate_claims(files)
        read = files.as_dict()
        layout = "raw claims"
    elif path.is_file():
        table = load_providers_csv(path)
        read = {"providers": path}
        layout = "provider table"
    else:
        raise FileNotFoundError(f"no provider table or claims directory at {path}")
    return table, {"source": layout, "path": str(path),
                   "files": {kind: {"path": str(p), "sha256": sha256_of(p)}
                             for kind, p in read.items()}}


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex: which exact file a report ran on."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _header(path: Path) -> list[str]:
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return []


def _kind_of(columns: list[str]) -> str | None:
    have = set(columns)
    if set(LABEL_COLUMNS) <= have:
        return "labels"
    if "ClaimID" in have:
        return "inpatient" if set(ADMISSION_COLUMNS) & have else "outpatient"
    if {"BeneID", "DOB"} <= have:
        return "beneficiaries"
    return None


# Read as numbers straight away: converting text afterwards costs seconds on the full files.
_NUMERIC_COLUMNS = frozenset({*CHRONIC_COLUMNS, "InscClaimAmtReimbursed", "DeductibleAmtPaid"})


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Only ``columns``: amounts and flags as numbers, the rest as text (values are checked
    where they are used)."""
    missing = [c for c in columns if c not in _header(path)]
    if missing:
        raise ClaimsDataError(f"{path}: missing column(s) {', '.join(missing)}")
    types = {c: float if c in _NUMERIC_COLUMNS else str for c in columns}
    try:
        try:
            return pd.read_csv(path, usecols=list(columns), dtype=types,
                               keep_default_na=False, na_values=[""])
        except ValueError:
            # A value that is not a number: read all as text, so the checks can name it.
            return pd.read_csv(path, usecols=list(columns), dtype=str, keep_default_na=False,
                               na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ClaimsDataError(f"{path} is not a readable CSV file: {exc}") from exc


def _fail(path: Path, column: str, bad: pd.Series, problem: str) -> NoReturn:
    first = int(np.flatnonzero(bad.to_numpy())[0])
    raise ClaimsDataError(f"{path}: column {column}, line {first + _FIRST_DATA_LINE}: {problem}")


def _check_unique(frame: pd.DataFrame, column: str, path: Path) -> None:
    if frame[column].isna().any():
        _fail(path, column, frame[column].isna(), "is blank")
    duplicate = frame[column].duplicated()
    if duplicate.any():
        _fail(path, column, duplicate,
              f"{frame[column][duplicate].iloc[0]} appears more than once")


def _dates(frame: pd.DataFrame, column: str, path: Path, *, required: bool) -> pd.Series:
    parsed = pd.to_datetime(frame[column], format=_DATE_FORMAT, errors="coerce")
    bad = parsed.isna() & (frame[column].notna() | required)
    if bad.any():
        _fail(path, column, bad, f"{frame[column][bad].iloc[0]!r} is not a date (YYYY-MM-DD)")
    return parsed


def _claim_dates(claims: pd.DataFrame, column: str, fail: ClaimFailure) -> pd.Series:
    parsed = pd.to_datetime(claims[column], format=_DATE_FORMAT, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        value = claims[column].iloc[int(np.flatnonzero(bad)[0])]
        fail(column, bad, f"{value!r} is not a date (YYYY-MM-DD)")
    return parsed


def _most_common(group: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per group, its most frequent value; ties go to the smallest value (as text)."""
    frame = pd.DataFrame({"group": group, "value": values})
    counts = frame.value_counts().reset_index(name="count")
    counts = counts.sort_values(["group", "count", "value"], ascending=[True, False, True])
    first = counts.drop_duplicates("group")
    out = np.empty(n, dtype=object)
    out[first["group"].to_numpy()] = first["value"].to_numpy()
    return out


def _distinct_per_provider(provider: np.ndarray, columns: list[pd.Series], n: int) -> np.ndarray:
    """How many distinct non-blank values each provider has over ``columns`` together."""
    values = pd.concat(columns, ignore_index=True)
    owners = np.tile(provider, len(columns))
    codes, _ = pd.factorize(values)  # blanks become -1
    kept = codes >= 0
    pairs = pd.unique(owners[kept].astype(np.int64) * (codes.max() + 1) + codes[kept])
    return np.bincount(pairs // (codes.max() + 1), minlength=n)

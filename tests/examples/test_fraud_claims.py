"""The raw claims files: recognised by their columns, aggregated to known per-provider answers,
and every kind of bad data stopped with a one-line error that names file, column and line."""

from __future__ import annotations

import hashlib
import io
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

import fedsilo.examples.fraud.demo as demo
from fedsilo.cli.main import app
from fedsilo.examples.fraud.claims import (
    CHRONIC_COLUMNS,
    ClaimsDataError,
    aggregate_claims,
    find_claims_files,
    read_provider_data,
)
from fedsilo.examples.fraud.data import COLUMNS, ProviderSchemaError, load_providers_csv

# The public layout, every column, in its order.
BENEFICIARY_HEADER = ["BeneID", "DOB", "DOD", "Gender", "Race", "RenalDiseaseIndicator", "State",
                      "County", "NoOfMonths_PartACov", "NoOfMonths_PartBCov", *CHRONIC_COLUMNS,
                      "IPAnnualReimbursementAmt", "IPAnnualDeductibleAmt",
                      "OPAnnualReimbursementAmt", "OPAnnualDeductibleAmt"]
_CLAIM_START = ["BeneID", "ClaimID", "ClaimStartDt", "ClaimEndDt", "Provider",
                "InscClaimAmtReimbursed", "AttendingPhysician", "OperatingPhysician",
                "OtherPhysician"]
_CODES = ([f"ClmDiagnosisCode_{i}" for i in range(1, 11)]
          + [f"ClmProcedureCode_{i}" for i in range(1, 7)])
INPATIENT_HEADER = [*_CLAIM_START, "AdmissionDt", "ClmAdmitDiagnosisCode", "DeductibleAmtPaid",
                    "DischargeDt", "DiagnosisGroupCode", *_CODES]
OUTPATIENT_HEADER = [*_CLAIM_START, *_CODES, "DeductibleAmtPaid", "ClmAdmitDiagnosisCode"]


def _bene(bene_id: str, dob: str, dod: str, state: int, conditions: set[str]) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(BENEFICIARY_HEADER, "")
    row.update(BeneID=bene_id, DOB=dob, DOD=dod, Gender=1, Race=1, RenalDiseaseIndicator="0",
               State=state, County=100, NoOfMonths_PartACov=12, NoOfMonths_PartBCov=12,
               IPAnnualReimbursementAmt=0, IPAnnualDeductibleAmt=0,
               OPAnnualReimbursementAmt=0, OPAnnualDeductibleAmt=0)
    for column in CHRONIC_COLUMNS:
        row[column] = 1 if column in conditions else 2
    return row


def _claim(header: list[str], bene: str, claim: str, start: str, end: str, provider: str,
           amount: int, physician: str, deductible: str, codes: list[str]) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(header, "")
    row.update(BeneID=bene, ClaimID=claim, ClaimStartDt=start, ClaimEndDt=end,
               Provider=provider, InscClaimAmtReimbursed=amount,
               AttendingPhysician=physician, DeductibleAmtPaid=deductible)
    if "AdmissionDt" in header:
        row.update(AdmissionDt=start, DischargeDt=end, DiagnosisGroupCode="201")
    for i, code in enumerate(codes, 1):
        row[f"ClmDiagnosisCode_{i}"] = code
    return row


def write_fixture(directory: Path) -> dict[str, Path]:
    """Three providers whose every figure is worked out by hand in EXPECTED."""
    directory.mkdir(parents=True, exist_ok=True)
    ip, op = INPATIENT_HEADER, OUTPATIENT_HEADER
    frames = {
        "Train-1542865627584.csv": pd.DataFrame(
            {"Provider": ["PRV1", "PRV2", "PRV3"], "PotentialFraud": ["Yes", "No", "No"]}),
        "Train_Beneficiarydata-1542865627584.csv": pd.DataFrame([
            _bene("B1", "1940-01-01", "", 10, {"ChronicCond_Alzheimer", "ChronicCond_Cancer"}),
            _bene("B2", "1950-07-01", "2009-12-01", 20, {"ChronicCond_Diabetes"}),
            _bene("B3", "1930-01-01", "", 20, set()),
        ], columns=BENEFICIARY_HEADER),
        "Train_Inpatientdata-1542865627584.csv": pd.DataFrame([
            _claim(ip, "B1", "CLM1", "2009-03-01", "2009-03-05", "PRV1", 10000, "PHY1", "1068",
                   ["4019", "2724"]),
            _claim(ip, "B2", "CLM2", "2009-06-10", "2009-06-12", "PRV1", 6000, "PHY2", "",
                   ["4019", "V5869", "25000"]),
        ], columns=ip),
        "Train_Outpatientdata-1542865627584.csv": pd.DataFrame([
            _claim(op, "B1", "CLM3", "2009-04-01", "2009-04-01", "PRV1", 100, "PHY1", "0",
                   ["2724"]),
            _claim(op, "B3", "CLM4", "2009-01-01", "2009-01-02", "PRV2", 200, "PHY3", "10",
                   ["1234", "5678"]),
            _claim(op, "B2", "CLM5", "2009-02-01", "2009-02-01", "PRV3", 50, "", "0", []),
            _claim(op, "B3", "CLM6", "2009-05-01", "2009-05-01", "PRV3", 70, "PHY4", "20",
                   ["1234"]),
        ], columns=op),
    }
    for name, frame in frames.items():
        frame.to_csv(directory / name, index=False)
    (directory / "notes.csv").write_text("what,why\nunrelated,ignored\n")
    return {name: directory / name for name in frames}


def _age(born: date, at: date) -> float:
    return (at - born).days / 365.25


EXPECTED = {
    "PRV1": {"state": "10",  # B1 (state 10) and B2 (state 20) tie: "10" sorts first
             "n_beneficiaries": 2, "n_claims": 3, "n_inpatient_claims": 2,
             "pct_inpatient_claims": 2 / 3, "claims_per_beneficiary": 1.5,
             "total_reimbursed": 16100.0, "mean_reimbursed_per_claim": 16100 / 3,
             "mean_deductible": 1068 / 3, "mean_claim_days": (5 + 3 + 1) / 3,
             "mean_beneficiary_age": (_age(date(1940, 1, 1), date(2009, 3, 1))
                                      + _age(date(1950, 7, 1), date(2009, 6, 10))
                                      + _age(date(1940, 1, 1), date(2009, 4, 1))) / 3,
             "pct_chronic": 0.5, "pct_deceased_beneficiaries": 0.5, "n_physicians": 2,
             "n_diagnosis_codes": 4, "mean_diagnoses_per_claim": 2.0, "is_fraud": 1},
    "PRV2": {"state": "20", "n_beneficiaries": 1, "n_claims": 1, "n_inpatient_claims": 0,
             "pct_inpatient_claims": 0.0, "claims_per_beneficiary": 1.0,
             "total_reimbursed": 200.0, "mean_reimbursed_per_claim": 200.0,
             "mean_deductible": 10.0, "mean_claim_days": 2.0,
             "mean_beneficiary_age": _age(date(1930, 1, 1), date(2009, 1, 1)),
             "pct_chronic": 0.0, "pct_deceased_beneficiaries": 0.0, "n_physicians": 1,
             "n_diagnosis_codes": 2, "mean_diagnoses_per_claim": 2.0, "is_fraud": 0},
    "PRV3": {"state": "20", "n_beneficiaries": 2, "n_claims": 2, "n_inpatient_claims": 0,
             "pct_inpatient_claims": 0.0, "claims_per_beneficiary": 1.0,
             "total_reimbursed": 120.0, "mean_reimbursed_per_claim": 60.0,
             "mean_deductible": 10.0, "mean_claim_days": 1.0,
             "mean_beneficiary_age": (_age(date(1950, 7, 1), date(2009, 2, 1))
                                      + _age(date(1930, 1, 1), date(2009, 5, 1))) / 2,
             "pct_chronic": 0.0, "pct_deceased_beneficiaries": 0.5, "n_physicians": 1,
             "n_diagnosis_codes": 1, "mean_diagnoses_per_claim": 0.5, "is_fraud": 0},
}


def test_files_are_recognised_by_their_columns_not_their_names(tmp_path: Path) -> None:
    written = write_fixture(tmp_path / "given")
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for i, path in enumerate(written.values()):
        (renamed / f"part{3 - i}.csv").write_bytes(path.read_bytes())
    files = find_claims_files(renamed)
    assert files.labels.name == "part3.csv"
    assert files.beneficiaries.name == "part2.csv"
    assert files.inpatient.name == "part1.csv"
    assert files.outpatient.name == "part0.csv"


def test_the_fixture_aggregates_to_its_hand_worked_answers(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    table = aggregate_claims(find_claims_files(tmp_path))
    assert list(table.columns) == COLUMNS
    assert table["provider_id"].tolist() == ["PRV1", "PRV2", "PRV3"]
    assert set(table["specialty"]) == {"unknown"}
    for _, row in table.iterrows():
        for column, value in EXPECTED[row["provider_id"]].items():
            if isinstance(value, str):
                assert row[column] == value, (row["provider_id"], column)
            else:
                assert row[column] == pytest.approx(value, rel=1e-12), (row["provider_id"], column)


def test_the_aggregate_is_a_valid_provider_table_and_the_source_is_recorded(
    tmp_path: Path
) -> None:
    written = write_fixture(tmp_path / "raw")
    table, source = read_provider_data(tmp_path / "raw")
    assert source["source"] == "raw claims"
    assert {kind: Path(f["path"]).name for kind, f in source["files"].items()} == {
        "labels": "Train-1542865627584.csv",
        "beneficiaries": "Train_Beneficiarydata-1542865627584.csv",
        "inpatient": "Train_Inpatientdata-1542865627584.csv",
        "outpatient": "Train_Outpatientdata-1542865627584.csv"}
    for f in source["files"].values():
        assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
    assert set(written.values()) == {Path(f["path"]) for f in source["files"].values()}

    table.to_csv(tmp_path / "providers.csv", index=False)
    again, table_source = read_provider_data(tmp_path / "providers.csv")
    assert table_source["source"] == "provider table"
    pd.testing.assert_frame_equal(again, load_providers_csv(tmp_path / "providers.csv"))
    pd.testing.assert_frame_equal(again, table, check_dtype=False)


def _edit(directory: Path, name: str, change: object) -> None:
    path = directory / name
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = change(frame)  # type: ignore[operator]
    frame.to_csv(path, index=False)


def _set(row: int, column: str, value: str) -> object:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame
    return change


OUTPATIENT = "Train_Outpatientdata-1542865627584.csv"
INPATIENT = "Train_Inpatientdata-1542865627584.csv"
LABELS = "Train-1542865627584.csv"
BENEFICIARIES = "Train_Beneficiarydata-1542865627584.csv"

BAD_DATA = {
    "missing column": (OUTPATIENT, lambda f: f.drop(columns=["ClaimStartDt"]),
                       f"{OUTPATIENT}: missing column(s) ClaimStartDt"),
    "unparseable date": (OUTPATIENT, _set(1, "ClaimStartDt", "2009-13-01"),
                         f"{OUTPATIENT}: column ClaimStartDt, line 3: '2009-13-01' is not a date"),
    "unparseable birth date": (BENEFICIARIES, _set(2, "DOB", "01/01/1930"),
                               f"{BENEFICIARIES}: column DOB, line 4: '01/01/1930' is not a date"),
    "label other than Yes/No": (LABELS, _set(1, "PotentialFraud", "Maybe"),
                                f"{LABELS}: column PotentialFraud, line 3: must be Yes or No, "
                                "found 'Maybe'"),
    "claims without a label": (OUTPATIENT, _set(3, "Provider", "PRV9"),
                               f"{OUTPATIENT}: column Provider, line 5: 1 claims of 1 providers "
                               f"have no label in {LABELS} (first: PRV9)"),
    "duplicate claim id": (OUTPATIENT, _set(0, "ClaimID", "CLM1"),
                           f"{OUTPATIENT}: column ClaimID, line 2: claim id CLM1 appears more "
                           "than once"),
    "amount not a number": (INPATIENT, _set(1, "InscClaimAmtReimbursed", "lots"),
                            f"{INPATIENT}: column InscClaimAmtReimbursed, line 3: must be a "
                            "non-negative number"),
    "labelled provider without claims": (
        LABELS, lambda f: pd.concat([f, pd.DataFrame({"Provider": ["PRV4"],
                                                      "PotentialFraud": ["No"]})]),
        f"{LABELS}: column Provider, line 5: 1 labelled providers have no claims (first: PRV4)"),
    "duplicate beneficiary": (BENEFICIARIES, _set(2, "BeneID", "B1"),
                              f"{BENEFICIARIES}: column BeneID, line 4: B1 appears more than "
                              "once"),
    "unknown beneficiary": (INPATIENT, _set(0, "BeneID", "B99"),
                            f"{INPATIENT}: column BeneID, line 2: beneficiary B99 is not in "
                            f"{BENEFICIARIES}"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_stops_with_one_line_naming_file_column_and_line(
    case: str, tmp_path: Path
) -> None:
    name, change, message = BAD_DATA[case]
    write_fixture(tmp_path / "raw")
    _edit(tmp_path / "raw", name, change)
    with pytest.raises(ClaimsDataError) as caught:
        aggregate_claims(find_claims_files(tmp_path / "raw"))
    text = str(caught.value)
    assert "\n" not in text
    assert text.endswith(message) or message in text, text
    assert text.startswith(str(tmp_path / "raw" / name))


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_the_demo_on_bad_data_leaves_no_work_directory(case: str, tmp_path: Path) -> None:
    name, change, message = BAD_DATA[case]
    write_fixture(tmp_path / "raw")
    _edit(tmp_path / "raw", name, change)
    output = tmp_path / "work"
    with pytest.raises(ProviderSchemaError, match="line|missing column"):
        demo.run_demo(output, rounds=1, data=tmp_path / "raw",
                      console=Console(file=io.StringIO()))
    assert not output.exists()


def test_a_directory_without_all_four_files_is_refused(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    (tmp_path / INPATIENT).unlink()
    with pytest.raises(ClaimsDataError, match="lacks the inpatient file"):
        find_claims_files(tmp_path)


def test_two_sets_of_files_in_one_directory_are_refused(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    (tmp_path / "Test_Beneficiarydata-1542865627584.csv").write_bytes(
        (tmp_path / BENEFICIARIES).read_bytes())
    with pytest.raises(ClaimsDataError, match="2 beneficiaries files"):
        find_claims_files(tmp_path)


def test_the_command_names_the_bad_value_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_fixture(tmp_path / "raw")
    _edit(tmp_path / "raw", OUTPATIENT, _set(1, "ClaimStartDt", "2009-13-01"))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(app, ["demo", "--data", "raw", "--output",
                                      str(tmp_path / "work")])
    assert result.exit_code == 1
    said = "".join(result.output.split())  # the console may wrap a long line, even mid-word
    expected = f"{tmp_path / 'raw' / OUTPATIENT}: column ClaimStartDt, line 3: '2009-13-01'"
    assert "".join(expected.split()) in said
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before

"""The synthetic provider table: reproducible, well-formed, realistic enough to federate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedsilo.examples.fraud.data import (
    COLUMNS,
    FEATURES,
    LABEL,
    ProviderSchemaError,
    generate_providers,
    load_providers_csv,
)
from fedsilo.examples.fraud.populations import REGIONS, STATES


def test_same_seed_gives_the_same_table() -> None:
    pd.testing.assert_frame_equal(generate_providers(800, seed=7), generate_providers(800, seed=7))


def test_another_seed_gives_another_table() -> None:
    a, b = generate_providers(800, seed=7), generate_providers(800, seed=8)
    assert not np.allclose(a[FEATURES].to_numpy(float), b[FEATURES].to_numpy(float))


def test_columns_and_types_follow_the_schema(providers: pd.DataFrame) -> None:
    assert list(providers.columns) == COLUMNS
    assert len(providers) == 5400
    assert providers["provider_id"].is_unique
    assert providers["provider_id"].str.fullmatch(r"PRV\d{5}").all()
    assert set(providers["state"]) <= {s.code for s in STATES}
    for column in [*FEATURES, LABEL]:
        assert pd.api.types.is_numeric_dtype(providers[column]), column
    assert not providers.isna().any().any()
    assert (providers[FEATURES] >= 0).all().all()
    assert set(providers[LABEL].unique()) == {0, 1}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_about_ten_percent_of_providers_are_fraudulent(seed: int) -> None:
    rate = generate_providers(seed=seed)[LABEL].mean()
    assert 0.08 <= rate <= 0.12


def test_derived_columns_agree_with_their_parts(providers: pd.DataFrame) -> None:
    p = providers
    assert (p["n_inpatient_claims"] <= p["n_claims"]).all()
    np.testing.assert_allclose(p["pct_inpatient_claims"], p["n_inpatient_claims"] / p["n_claims"])
    np.testing.assert_allclose(p["claims_per_beneficiary"], p["n_claims"] / p["n_beneficiaries"])
    np.testing.assert_allclose(p["total_reimbursed"],
                               p["n_claims"] * p["mean_reimbursed_per_claim"], rtol=1e-3)
    assert p["mean_diagnoses_per_claim"].between(1, 10).all()
    assert p["pct_chronic"].between(0, 1).all()
    assert p["pct_deceased_beneficiaries"].between(0, 1).all()


def test_regions_differ_in_fraud_rate_and_features(providers: pd.DataFrame) -> None:
    region_of = {s.code: s.region for s in STATES}
    by_region = providers.assign(region=providers["state"].map(region_of)).groupby("region")
    assert set(by_region.groups) == set(REGIONS)
    rates = by_region[LABEL].mean()
    assert rates.max() - rates.min() > 0.03
    cost = by_region["mean_reimbursed_per_claim"].median()
    assert cost.max() / cost.min() > 1.15


def test_fraud_is_learnable_but_not_perfectly(providers: pd.DataFrame) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from fedsilo.examples.fraud.features import scale_features

    X, y = scale_features(providers), providers[LABEL].to_numpy()
    model = LogisticRegression(max_iter=500).fit(X[:4000], y[:4000])
    auc = roc_auc_score(y[4000:], model.predict_proba(X[4000:])[:, 1])
    assert 0.75 < auc < 0.97


def test_csv_round_trip(providers: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "providers.csv"
    providers.to_csv(path, index=False)
    loaded = load_providers_csv(path)
    pd.testing.assert_frame_equal(loaded, providers, check_dtype=False, rtol=1e-12)


def test_csv_missing_columns_are_named(providers: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "providers.csv"
    providers.drop(columns=["n_claims", "is_fraud"]).to_csv(path, index=False)
    with pytest.raises(ProviderSchemaError, match="n_claims, is_fraud"):
        load_providers_csv(path)


def test_csv_schema_error_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="provider_id"):
        load_providers_csv(path)


def test_csv_non_numeric_feature_is_named(providers: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "providers.csv"
    providers.assign(mean_deductible="unknown").to_csv(path, index=False)
    with pytest.raises(ProviderSchemaError, match="mean_deductible"):
        load_providers_csv(path)


def test_csv_bad_labels_are_rejected(providers: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "providers.csv"
    providers.assign(is_fraud=2).to_csv(path, index=False)
    with pytest.raises(ProviderSchemaError, match="is_fraud"):
        load_providers_csv(path)


def test_csv_missing_values_are_named(providers: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "providers.csv"
    broken = providers.copy()
    broken.loc[3, "pct_chronic"] = np.nan
    broken.to_csv(path, index=False)
    with pytest.raises(ProviderSchemaError, match="pct_chronic"):
        load_providers_csv(path)


def test_missing_csv_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        load_providers_csv(tmp_path / "nowhere.csv")

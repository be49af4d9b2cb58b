"""Data preparation: the server's test set stays original, SMOTE touches training rows only,
sites are disjoint groups of states with different data, channels round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedsilo.examples.fraud.data import FEATURES, LABEL
from fedsilo.examples.fraud.features import SCALING, scale_features
from fedsilo.examples.fraud.prepare import (
    ChannelError,
    FederatedSplit,
    load_site_channel,
    load_test_set,
    partition_states,
    prepare_federation,
    write_site_channel,
    write_test_set,
)


def rows_of(X: np.ndarray) -> set[tuple[float, ...]]:
    return {tuple(np.round(row, 9)) for row in X}


def test_scaling_lists_every_feature_in_order() -> None:
    assert list(SCALING) == FEATURES


def test_scaling_of_a_row_does_not_depend_on_the_other_rows(providers: pd.DataFrame) -> None:
    whole = scale_features(providers)
    np.testing.assert_array_equal(scale_features(providers.iloc[[17]]), whole[[17]])
    np.testing.assert_array_equal(scale_features(providers.iloc[:100]), whole[:100])


def test_scaled_features_are_of_order_one(providers: pd.DataFrame) -> None:
    X = scale_features(providers)
    assert np.all(np.abs(X.mean(axis=0)) < 1.0)
    assert np.all((X.std(axis=0) > 0.2) & (X.std(axis=0) < 2.5))


def test_test_set_is_original_rows_with_the_original_balance(
    providers: pd.DataFrame, split: FederatedSplit
) -> None:
    assert len(split.y_test) == round(0.2 * len(providers))
    assert abs(split.y_test.mean() - providers[LABEL].mean()) < 0.005
    original = providers.set_index("provider_id").loc[split.test_provider_ids]
    np.testing.assert_array_equal(split.X_test, scale_features(original))
    np.testing.assert_array_equal(split.y_test, original[LABEL].to_numpy())


def test_smote_balances_training_rows_only(providers: pd.DataFrame, split: FederatedSplit) -> None:
    original = rows_of(scale_features(providers))
    for site in split.sites:
        assert site.y_train.mean() == pytest.approx(0.5)
        synthetic = [row for row in site.X_train if tuple(np.round(row, 9)) not in original]
        assert len(synthetic) > 0
        assert rows_of(site.X_val) <= original
        assert 0.03 < site.y_val.mean() < 0.2
    assert rows_of(split.X_test) <= original


def test_synthetic_rows_are_all_fraud(providers: pd.DataFrame, split: FederatedSplit) -> None:
    original = rows_of(scale_features(providers))
    for site in split.sites:
        is_synthetic = np.array([tuple(np.round(r, 9)) not in original for r in site.X_train])
        assert site.y_train[is_synthetic].all()
        n_fraud_original = int(site.y_train[~is_synthetic].sum())
        assert is_synthetic.sum() == int((site.y_train == 0).sum()) - n_fraud_original


def test_without_smote_training_rows_keep_the_original_balance(providers: pd.DataFrame) -> None:
    plain = prepare_federation(providers, n_sites=3, seed=0, smote=False)
    for site in plain.sites:
        assert 0.03 < site.y_train.mean() < 0.2


def test_no_provider_is_in_two_places(providers: pd.DataFrame, split: FederatedSplit) -> None:
    test_rows = rows_of(split.X_test)
    seen: set[tuple[float, ...]] = set()
    for site in split.sites:
        own = rows_of(site.X_val) | (rows_of(site.X_train) & rows_of(scale_features(providers)))
        assert not own & test_rows
        assert not own & seen
        seen |= own
    assert len(seen) + len(test_rows) == len(providers)


def test_sites_are_disjoint_groups_of_states(
    providers: pd.DataFrame, split: FederatedSplit
) -> None:
    states = [set(site.states) for site in split.sites]
    assert all(states)
    assert set.union(*states) == set(providers["state"])
    assert sum(len(s) for s in states) == len(set(providers["state"]))


def test_sites_hold_non_identical_data(split: FederatedSplit) -> None:
    means = np.array([site.X_val.mean(axis=0) for site in split.sites])
    spread = means.max(axis=0) - means.min(axis=0)
    assert spread.max() > 0.3  # some feature differs by a third of its scale or more
    rates = [site.y_val.mean() for site in split.sites]
    assert max(rates) - min(rates) > 0.01


def test_site_sizes_are_similar(split: FederatedSplit) -> None:
    sizes = [len(site.y_val) for site in split.sites]
    assert max(sizes) < 1.6 * min(sizes)


def test_partition_keeps_every_site_non_empty() -> None:
    states = pd.Series(["CA"] * 90 + ["NY"] * 5 + ["TX"] * 5)
    groups = partition_states(states, 3)
    assert len(groups) == 3 and all(groups)
    assert sorted(s for g in groups for s in g) == ["CA", "NY", "TX"]


def test_partition_places_unknown_states_last() -> None:
    groups = partition_states(pd.Series(["ZZ", "CT", "OR", "ZZ"]), 3)
    assert groups == [("CT",), ("OR",), ("ZZ",)]


def test_more_sites_than_states_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 states"):
        partition_states(pd.Series(["CA", "NY"]), 3)


def test_a_site_without_fraud_is_refused(providers: pd.DataFrame) -> None:
    honest_texas = providers[(providers["state"] != "TX") | (providers[LABEL] == 0)]
    few = pd.concat([honest_texas[honest_texas["state"] == "TX"],
                     providers[providers["state"] == "CA"]])
    with pytest.raises(ValueError, match="fewer sites"):
        prepare_federation(few, n_sites=2, seed=0, test_size=0.1)


def test_site_channel_round_trip(split: FederatedSplit, tmp_path: Path) -> None:
    site = split.sites[1]
    directory = write_site_channel(site, tmp_path / "sites" / site.name / "train")
    assert {p.name for p in directory.iterdir()} == {"train.csv", "validation.csv", "site.json"}
    loaded = load_site_channel(directory)
    assert loaded.name == site.name and loaded.states == site.states
    np.testing.assert_allclose(loaded.X_train, site.X_train, rtol=1e-12)
    np.testing.assert_array_equal(loaded.y_train, site.y_train)
    np.testing.assert_allclose(loaded.X_val, site.X_val, rtol=1e-12)
    np.testing.assert_array_equal(loaded.y_val, site.y_val)


def test_channel_without_site_file_is_named_after_its_site(
    split: FederatedSplit, tmp_path: Path
) -> None:
    directory = write_site_channel(split.sites[0], tmp_path / "north" / "train")
    (directory / "site.json").unlink()
    assert load_site_channel(directory).name == "north"


def test_missing_channel_file_is_named(split: FederatedSplit, tmp_path: Path) -> None:
    directory = write_site_channel(split.sites[0], tmp_path / "train")
    (directory / "validation.csv").unlink()
    with pytest.raises(ChannelError, match="validation.csv"):
        load_site_channel(directory)


def test_test_set_round_trip(split: FederatedSplit, tmp_path: Path) -> None:
    path = write_test_set(split, tmp_path / "server")
    assert pd.read_csv(path)["provider_id"].tolist() == split.test_provider_ids
    X, y = load_test_set(tmp_path / "server")
    np.testing.assert_allclose(X, split.X_test, rtol=1e-12)
    np.testing.assert_array_equal(y, split.y_test)


def test_preparation_is_reproducible(providers: pd.DataFrame, split: FederatedSplit) -> None:
    again = prepare_federation(providers, n_sites=3, seed=0)
    np.testing.assert_array_equal(again.X_test, split.X_test)
    for a, b in zip(again.sites, split.sites, strict=True):
        np.testing.assert_array_equal(a.X_train, b.X_train)

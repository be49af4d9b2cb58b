"""From one providers table to a federation: the server's test set and each site's data.

The steps follow the data preparation of a federated fraud study, with one change that a
federation demands:

1. A stratified test split. The test set stays with the server, keeps the original class
   balance and is only ever used to evaluate.
2. The rest is partitioned into sites by groups of neighbouring states, so the sites hold
   non-identical data: different regions, cost levels, fraud rates and fraud schemes.
3. Each site splits its rows into training and validation parts (stratified) and balances
   only its training part with SMOTE. SMOTE runs inside each site, after partitioning: run
   on the pooled data it would interpolate between providers of different sites, which is
   exactly the mixing a federation rules out. Validation keeps the original class balance.

Features go through the fixed transform of :mod:`fedsilo.examples.fraud.features`.

A site's data is handed to its training job as a "train" channel: a directory holding
``train.csv`` and ``validation.csv`` (the feature columns, scaled, and the label) and
``site.json`` (the site's name and states), the way a managed training job receives an input
channel. The server's test set is ``test.csv`` in the server's directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from fedsilo.examples.fraud.data import FEATURES, LABEL
from fedsilo.examples.fraud.features import scale_features
from fedsilo.examples.fraud.populations import STATES

__all__ = [
    "ChannelError",
    "FederatedSplit",
    "SiteData",
    "load_site_channel",
    "load_test_set",
    "partition_providers",
    "partition_states",
    "prepare_federation",
    "prepare_many_sites",
    "write_site_channel",
    "write_test_set",
]

TRAIN_FILE = "train.csv"
VALIDATION_FILE = "validation.csv"
SITE_FILE = "site.json"
TEST_FILE = "test.csv"


class ChannelError(ValueError):
    """A channel or test-set directory is missing files or holds files of the wrong shape."""


@dataclass
class SiteData:
    """One site's model-ready data: SMOTE-balanced training rows and untouched validation rows."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    states: tuple[str, ...] = ()


@dataclass
class FederatedSplit:
    """The sites' data and the server's test set (original rows, original class balance)."""

    sites: list[SiteData]
    X_test: np.ndarray
    y_test: np.ndarray
    test_provider_ids: list[str] = field(default_factory=list)


def prepare_federation(
    df: pd.DataFrame,
    n_sites: int = 3,
    seed: int = 0,
    *,
    test_size: float = 0.2,
    val_size: float = 0.2,
    smote: bool = True,
) -> FederatedSplit:
    """Split ``df`` into the server's test set and ``n_sites`` sites grouped by state."""

    def by_states(rest: pd.DataFrame) -> list[tuple[tuple[str, ...], pd.Index]]:
        groups = partition_states(rest["state"], n_sites)
        return [(g, rest.index[rest["state"].isin(g)]) for g in groups]

    return _split(df, n_sites, seed, test_size, val_size, smote, by_states)


def _split(
    df: pd.DataFrame,
    n_sites: int,
    seed: int,
    test_size: float,
    val_size: float,
    smote: bool,
    partition: Callable[[pd.DataFrame], list[tuple[tuple[str, ...], pd.Index]]],
) -> FederatedSplit:
    """The server's stratified test set, and sites cut from the rest by ``partition``."""
    if n_sites < 1:
        raise ValueError(f"n_sites must be at least 1, got {n_sites}")
    rest, test = train_test_split(df, test_size=test_size, stratify=df[LABEL],
                                  random_state=seed)
    sites = [
        _prepare_site(f"site{i + 1}", states, rest.loc[index], seed + i, val_size, smote)
        for i, (states, index) in enumerate(partition(rest))
    ]
    return FederatedSplit(
        sites=sites,
        X_test=scale_features(test),
        y_test=test[LABEL].to_numpy(dtype=np.int64),
        test_provider_ids=test["provider_id"].astype(str).tolist(),
    )


def partition_states(states: pd.Series, n_sites: int) -> list[tuple[str, ...]]:
    """Cut the states, in region order, into ``n_sites`` runs with similar numbers of rows.

    Known states keep the order of :data:`.populations.STATES`, so that a run of states stays
    within one or two regions; states not listed there follow alphabetically.
    """
    counts = states.value_counts()
    known = [s.code for s in STATES if s.code in counts.index]
    ordered = known + sorted(set(counts.index) - set(known))
    if len(ordered) < n_sites:
        raise ValueError(f"{n_sites} sites need at least {n_sites} states; the data has "
                         f"{len(ordered)}")
    cumulative = np.cumsum([counts[s] for s in ordered])
    total = cumulative[-1]
    cuts: list[int] = []
    for k in range(1, n_sites):
        cut = int(np.argmin(np.abs(cumulative - total * k / n_sites))) + 1
        # Every site keeps at least one state.
        low = (cuts[-1] if cuts else 0) + 1
        high = len(ordered) - (n_sites - k)
        cuts.append(min(max(cut, low), high))
    bounds = [0, *cuts, len(ordered)]
    return [tuple(ordered[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def prepare_many_sites(
    df: pd.DataFrame,
    n_sites: int = 100,
    seed: int = 0,
    *,
    test_size: float = 0.2,
    val_size: float = 0.2,
    smote: bool = True,
) -> FederatedSplit:
    """Like :func:`prepare_federation`, for more sites than states: see
    :func:`partition_providers`."""
    return _split(df, n_sites, seed, test_size, val_size, smote,
                  lambda rest: partition_providers(rest, n_sites))


def partition_providers(
    rows: pd.DataFrame, n_sites: int
) -> list[tuple[tuple[str, ...], pd.Index]]:
    """Cut providers into ``n_sites`` sites: ``(states, row index)`` per site.

    Up to one site per state, sites are runs of neighbouring states (:func:`partition_states`).
    With more sites than states each state holds sites in proportion to its providers (at
    least one), and a state's providers, ordered by specialty, are cut into equal runs: sites
    differ by region through their state and, within a state, by their mix of specialties,
    as a hospital group differs from a cardiology network next door.
    """
    counts = rows["state"].value_counts()
    if n_sites <= len(counts):
        groups = partition_states(rows["state"], n_sites)
        return [(g, rows.index[rows["state"].isin(g)]) for g in groups]
    known = [s.code for s in STATES if s.code in counts.index]
    ordered = known + sorted(set(counts.index) - set(known))
    shares = _largest_remainder([int(counts[s]) for s in ordered], n_sites)
    sites: list[tuple[tuple[str, ...], pd.Index]] = []
    for state, share in zip(ordered, shares, strict=True):
        in_state = rows[rows["state"] == state].sort_values(["specialty", "provider_id"])
        for part in np.array_split(np.arange(len(in_state)), share):
            sites.append(((state,), in_state.index[part]))
    return sites


def _largest_remainder(sizes: list[int], seats: int) -> list[int]:
    """``seats`` split in proportion to ``sizes``, at least one each (Hamilton's method)."""
    if seats < len(sizes):
        raise ValueError(f"{seats} seats cannot give each of {len(sizes)} groups one")
    total = sum(sizes)
    quotas = [seats * size / total for size in sizes]
    given = [max(1, int(q)) for q in quotas]
    by_remainder = sorted(range(len(sizes)), key=lambda i: quotas[i] - int(quotas[i]),
                          reverse=True)
    while sum(given) < seats:
        for i in by_remainder:
            if sum(given) == seats:
                break
            given[i] += 1
    while sum(given) > seats:  # the minimum of one pushed small groups above their quota
        i = max((i for i in range(len(sizes)) if given[i] > 1),
                key=lambda i: given[i] - quotas[i])
        given[i] -= 1
    return given


def _prepare_site(
    name: str,
    states: tuple[str, ...],
    rows: pd.DataFrame,
    seed: int,
    val_size: float,
    smote: bool,
) -> SiteData:
    y = rows[LABEL].to_numpy(dtype=np.int64)
    n_fraud = int(y.sum())
    if n_fraud < 4 or n_fraud > len(y) - 4:
        raise ValueError(
            f"{name} ({', '.join(states)}) has {n_fraud} fraudulent providers out of {len(y)}; "
            "each site needs a few of each class: use fewer sites or more providers")
    X = scale_features(rows)
    X_train, X_val, y_train, y_val = train_test_split(
        X, y, test_size=val_size, stratify=y, random_state=seed)
    if smote:
        # Imported here: imbalanced-learn takes seconds to import and site clients never need it.
        from imblearn.over_sampling import SMOTE

        minority = int(min(y_train.sum(), len(y_train) - y_train.sum()))
        sampler = SMOTE(random_state=seed, k_neighbors=min(5, minority - 1))
        X_train, y_train = sampler.fit_resample(X_train, y_train)
    return SiteData(name=name, X_train=np.asarray(X_train), y_train=np.asarray(y_train),
                    X_val=X_val, y_val=y_val, states=states)


def write_site_channel(site: SiteData, directory: str | Path) -> Path:
    """Write ``site``'s training and validation rows as a channel in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _frame(site.X_train, site.y_train).to_csv(directory / TRAIN_FILE, index=False)
    _frame(site.X_val, site.y_val).to_csv(directory / VALIDATION_FILE, index=False)
    meta = {"name": site.name, "states": list(site.states)}
    (directory / SITE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def load_site_channel(directory: str | Path) -> SiteData:
    """Read a channel written by :func:`write_site_channel`.

    Without ``site.json`` the site is named after the directory (its parent when the
    directory is called ``train``).
    """
    directory = Path(directory)
    X_train, y_train = _read_rows(directory / TRAIN_FILE)
    X_val, y_val = _read_rows(directory / VALIDATION_FILE)
    meta_path = directory / SITE_FILE
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        name, states = str(meta["name"]), tuple(str(s) for s in meta.get("states", []))
    else:
        named = directory.parent if directory.name == "train" else directory
        name, states = named.resolve().name, ()
    return SiteData(name=name, X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val,
                    states=states)


def write_test_set(split: FederatedSplit, directory: str | Path) -> Path:
    """Write the server's test set to ``directory/test.csv`` (provider ids included)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frame = _frame(split.X_test, split.y_test)
    if split.test_provider_ids:
        frame.insert(0, "provider_id", split.test_provider_ids)
    path = directory / TEST_FILE
    frame.to_csv(path, index=False)
    return path


def load_test_set(directory: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The server's test features and labels, as written by :func:`write_test_set`."""
    return _read_rows(Path(directory) / TEST_FILE)


def _frame(X: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(X, columns=FEATURES)
    frame[LABEL] = y
    return frame


def _read_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ChannelError(f"{path} does not exist; write the channel with write_site_channel "
                           "or point to the directory that holds it")
    frame = pd.read_csv(path)
    missing = [c for c in [*FEATURES, LABEL] if c not in frame.columns]
    if missing:
        raise ChannelError(f"{path} lacks the columns {', '.join(missing)}")
    return frame[FEATURES].to_numpy(dtype=float), frame[LABEL].to_numpy(dtype=np.int64)

"""Shared data for the fraud example's tests: one generated table and its federation split."""

from __future__ import annotations

import pandas as pd
import pytest

from fedsilo.examples.fraud.data import generate_providers
from fedsilo.examples.fraud.prepare import FederatedSplit, prepare_federation


@pytest.fixture(scope="session")
def providers() -> pd.DataFrame:
    return generate_providers(seed=0)


@pytest.fixture(scope="session")
def split(providers: pd.DataFrame) -> FederatedSplit:
    return prepare_federation(providers, n_sites=3, seed=0)

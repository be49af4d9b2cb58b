"""The newest-Flower venv, for the differential tests against Flower's strategies."""

from __future__ import annotations

import pytest

from tests.interop.conftest import build_or_fail
from tests.interop.flower_envs import FLWR_NEWEST, FlowerEnv


@pytest.fixture(scope="session")
def flwr_newest_env() -> FlowerEnv:
    """A venv with the newest flwr (built once, cached in $FEDSILO_TEST_VENVS)."""
    return build_or_fail(FLWR_NEWEST)

"""The newest Flower in its own venv, for the differential tests against its strategies.

Only flwr is installed there (no editable fedsilo): the strategies' reference runs need
nothing else, and the venv's identity then does not depend on which checkout builds it.
"""

from __future__ import annotations

import pytest

from tests.interop.conftest import build_or_fail
from tests.interop.flower_envs import FLWR_NEWEST_PLAIN, FlowerEnv


@pytest.fixture(scope="session")
def flwr_newest_env() -> FlowerEnv:
    """A venv with the newest flwr (built once, cached in $FEDSILO_TEST_VENVS)."""
    return build_or_fail(FLWR_NEWEST_PLAIN)

"""Fixtures for the Flower interoperability tests: one cached venv per Flower release."""

from __future__ import annotations

import pytest

from tests.interop.flower_envs import (
    FLWR_1_3,
    FLWR_NEWEST,
    FlowerEnv,
    FlowerEnvError,
    FlowerEnvSpec,
    ensure_flower_env,
)


def build_or_fail(spec: FlowerEnvSpec) -> FlowerEnv:
    """The venv for ``spec``; a failed build fails the test with the tool's output."""
    try:
        return ensure_flower_env(spec)
    except FlowerEnvError as exc:
        pytest.fail(f"could not build the {spec.name} venv: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def flwr_1_3_env() -> FlowerEnv:
    """A venv with flwr==1.3.0 (the seed's pin) and scikit-learn."""
    return build_or_fail(FLWR_1_3)


@pytest.fixture(scope="session")
def flwr_newest_env() -> FlowerEnv:
    """A venv with the newest flwr, scikit-learn, and fedsilo installed editable."""
    return build_or_fail(FLWR_NEWEST)


@pytest.fixture(params=["flwr_1_3_env", "flwr_newest_env"], ids=["flwr-1.3.0", "flwr-newest"])
def flwr_env(request: pytest.FixtureRequest) -> FlowerEnv:
    """Each Flower venv in turn."""
    env: FlowerEnv = request.getfixturevalue(request.param)
    return env

"""The cache of Flower venvs: reuse only after a recorded success, fail loudly otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.interop import flower_envs
from tests.interop.conftest import build_or_fail
from tests.interop.flower_envs import MARKER_NAME, FlowerEnvSpec, ensure_flower_env

SPEC = FlowerEnvSpec("flwr-test", ("flwr==1.3.0", "scikit-learn"))


def fake_venv(cache: Path, marker: dict[str, object]) -> Path:
    root = cache / SPEC.name
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").touch()
    (root / MARKER_NAME).write_text(json.dumps(marker))
    return root


def refuse_to_run(*args: object, **kwargs: object) -> str:
    raise AssertionError(f"nothing should be installed, but ran {args}")


def test_a_venv_whose_marker_records_success_is_reused_without_running_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_venv(tmp_path, {"request": SPEC.request(), "flwr_version": "1.3.0",
                                "install": "ok"})
    monkeypatch.setattr(flower_envs, "_run", refuse_to_run)
    env = ensure_flower_env(SPEC, tmp_path)
    assert (env.root, env.flwr_version) == (root, "1.3.0")


@pytest.mark.parametrize("marker", [
    {"request": {"requirements": ["flwr==1.2.0"]}, "flwr_version": "1.2.0", "install": "ok"},
    {"request": SPEC.request(), "flwr_version": "1.3.0", "install": "started"},
], ids=["other-request", "unfinished-install"])
def test_a_venv_without_a_matching_success_marker_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: dict[str, object]
) -> None:
    root = fake_venv(tmp_path, marker)
    (root / "stale-file").touch()
    ran: list[list[str]] = []

    def record(argv: list[str], timeout: float, what: str) -> str:
        ran.append(list(argv))
        if argv[1:3] == ["-m", "venv"]:
            Path(argv[3]).mkdir()
        return "1.3.0\n"

    monkeypatch.setattr(flower_envs, "_run", record)
    env = ensure_flower_env(SPEC, tmp_path)
    assert [argv[1:3] for argv in ran] == [["-m", "venv"], ["-m", "pip"], ["-c", ran[2][2]]]
    assert ran[1][-2:] == ["flwr==1.3.0", "scikit-learn"]
    assert not (root / "stale-file").exists()
    recorded = json.loads((env.root / MARKER_NAME).read_text())
    assert recorded == {"request": SPEC.request(), "flwr_version": "1.3.0", "install": "ok"}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_failed_install_fails_the_test_with_pips_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDSILO_TEST_VENVS", str(tmp_path))
    # A requirement pip rejects before it asks any index.
    broken = FlowerEnvSpec("flwr-broken", ("flwr[",))
    with pytest.raises(pytest.fail.Exception) as failure:
        build_or_fail(broken)
    message = str(failure.value)
    assert "pip install flwr[ failed" in message
    assert "flwr[" in message.split("--- stderr ---")[1]  # pip's own words
    assert not (tmp_path / broken.name / MARKER_NAME).exists()

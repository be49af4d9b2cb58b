"""``fedsilo run APP_DIR``: the quickstart-numpy app in simulation, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedsilo.app.project import AppProjectError, load_app_project, parse_run_config
from fedsilo.common.config import flatten_dict, unflatten_dict

REPO = Path(__file__).resolve().parents[2]
NUMPY_APP = REPO / "examples" / "quickstart-numpy"
FEDSILO = str(Path(sys.executable).with_name("fedsilo"))


def _fedavg_weight(rounds: int, lr: float, num_nodes: int) -> float:
    """Every weight after ``rounds`` of the quickstart: w <- w + lr (t - w), where t is the
    example-weighted mean of the targets p + 1 with 10 (p + 1) examples."""
    target = sum((p + 1) ** 2 for p in range(num_nodes)) / sum(p + 1 for p in range(num_nodes))
    weight = 0.0
    for _ in range(rounds):
        weight += lr * (target - weight)
    return weight


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([FEDSILO, "run", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=240, env=env)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fedsilo_run_trains_the_numpy_app_and_saves_its_model(tmp_path: Path) -> None:
    done = _run(str(NUMPY_APP), "--run-config", "num-server-rounds=4 lr=0.25", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "federation 'local-simulation': 3 virtual nodes" in done.stdout
    assert "round 4/4" in done.stderr
    model = np.load(tmp_path / "final_model.npz")
    expected = _fedavg_weight(4, 0.25, 3)
    assert np.allclose(model["arr_0"], expected) and np.allclose(model["arr_1"], expected)
    assert model["arr_0"].dtype == np.float32


@pytest.mark.parametrize(("args", "message"), [
    (["--run-config", "num-rounds=2"], "'num-rounds' is not in [tool.flwr.app.config]"),
    (["nowhere"], "no federation 'nowhere'"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = _run(str(NUMPY_APP), *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "final_model.npz").exists()


def test_an_error_in_the_server_app_is_one_clear_line(tmp_path: Path) -> None:
    app = tmp_path / "broken"
    (app / "broken_app").mkdir(parents=True)
    (app / "broken_app" / "__init__.py").write_text("")
    (app / "broken_app" / "apps.py").write_text(
        "from fedsilo.clientapp import ClientApp\n"
        "from fedsilo.serverapp import ServerApp\n"
        "client = ClientApp()\n"
        "server = ServerApp()\n"
        "@server.main()\n"
        "def main(grid, context):\n"
        "    raise KeyError('learning-rate')\n")
    (app / "pyproject.toml").write_text(
        '[tool.flwr.app.components]\nserverapp = "broken_app.apps:server"\n'
        'clientapp = "broken_app.apps:client"\n'
        '[tool.flwr.federations]\ndefault = "sim"\n[tool.flwr.federations.sim]\n'
        "options.num-supernodes = 1\n")
    done = _run(str(app), cwd=tmp_path)
    assert done.returncode == 1
    assert "fedsilo run: KeyError: 'learning-rate'" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_app_directory_is_read_as_flower_lays_it_out(tmp_path: Path) -> None:
    project = load_app_project(NUMPY_APP)
    assert project.serverapp == "quickstart_numpy.server_app:app"
    assert project.run_config == {"num-server-rounds": 3, "fraction-train": 1.0,
                                  "min-available-nodes": 3, "lr": 0.5}
    assert project.federation(None) == ("local-simulation", {"num-supernodes": 3})
    with pytest.raises(AppProjectError, match="no pyproject.toml"):
        load_app_project(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.flwr.app.components]\nserverapp = "x"\n')
    with pytest.raises(AppProjectError, match="needs serverapp"):
        load_app_project(tmp_path)


def test_run_config_values_are_toml_and_nested_tables_are_dotted(tmp_path: Path) -> None:
    assert parse_run_config('a=1 b=0.5 c=true d="x y" e=word') == {
        "a": 1, "b": 0.5, "c": True, "d": "x y", "e": "word"}
    config_file = tmp_path / "run.toml"
    config_file.write_text("[params]\neta = 0.1\n")
    assert parse_run_config(str(config_file)) == {"params.eta": 0.1}
    assert flatten_dict({"params": {"eta": 0.1, "depth": {"max": 3}}}) == {
        "params.eta": 0.1, "params.depth.max": 3}
    assert unflatten_dict({"params.eta": 0.1, "params.depth.max": 3}) == {
        "params": {"eta": 0.1, "depth": {"max": 3}}}
    with pytest.raises(AppProjectError, match="not key=value"):
        parse_run_config("lonely")

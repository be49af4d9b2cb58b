"""``fedsilo server``: settings from options and TOML, and the guard around --resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedsilo.cli import server as cli_server
from fedsilo.cli.main import app
from fedsilo.common import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.server import History
from fedsilo.server.checkpoint import RoundCheckpoint, load_latest, save_checkpoint
from fedsilo.server.strategy import FedAvg
from tests.reliability.momentum_strategy import MomentumFedAvg, initial_arrays

runner = CliRunner()


def test_a_directory_with_a_checkpoint_needs_resume(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, RoundCheckpoint(2, ndarrays_to_parameters([np.ones(2)]),
                                              History()))
    result = runner.invoke(app, ["server", "--address", "127.0.0.1:0",
                                 "--checkpoint-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "round 2" in result.output and "--resume" in result.output


def test_resume_without_a_checkpoint_directory_is_refused() -> None:
    result = runner.invoke(app, ["server", "--resume"])
    assert result.exit_code == 2
    assert "--resume needs --checkpoint-dir" in result.output


def test_unknown_settings_in_the_config_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('rounds = 4\nround_timout = 3.0\n')
    result = runner.invoke(app, ["server", "--config", str(config)])
    assert result.exit_code == 2
    assert "round_timout" in result.output
    config.write_text("rounds = [")
    result = runner.invoke(app, ["server", "--config", str(config)])
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_options_win_over_the_file_and_the_file_over_the_defaults(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('rounds = 4\nround_timeout = 3.0\ncheckpoint_dir = "runs/a"\n')
    settings = cli_server.resolve_settings(
        {"rounds": 9, "round_timeout": None, "seed": None}, cli_server.read_config(config))
    assert settings["rounds"] == 9
    assert settings["round_timeout"] == 3.0
    assert settings["checkpoint_dir"] == tmp_path / "runs" / "a"  # relative to the file
    assert settings["min_clients"] == cli_server.DEFAULTS["min_clients"]


def test_the_strategy_option_takes_a_factory_a_class_or_an_instance() -> None:
    built = cli_server.build_strategy(
        {**cli_server.DEFAULTS, "strategy": "tests.reliability.momentum_strategy:make_strategy"})
    assert isinstance(built, MomentumFedAvg) and built.min_fit_clients == 3
    by_class = cli_server.build_strategy(
        {**cli_server.DEFAULTS, "strategy": "fedsilo.server.strategy:FedAvg"})
    assert type(by_class) is FedAvg
    default = cli_server.build_strategy({**cli_server.DEFAULTS, "min_clients": 5,
                                         "fraction_fit": 0.5})
    assert isinstance(default, FedAvg)
    assert (default.min_fit_clients, default.min_available_clients, default.fraction_fit) == (
        5, 5, 0.5)
    with pytest.raises(ValueError, match="module:name"):
        cli_server.build_strategy({**cli_server.DEFAULTS, "strategy": "FedAvg"})
    with pytest.raises(ValueError, match="has no 'Nope'"):
        cli_server.build_strategy({**cli_server.DEFAULTS, "strategy": "fedsilo.server:Nope"})
    with pytest.raises(TypeError, match="not a Strategy"):
        cli_server.build_strategy({**cli_server.DEFAULTS, "strategy": "fedsilo.server:History"})


def test_a_run_from_a_config_file_is_refused_without_resume_and_resumed_with_it(
        tmp_path: Path) -> None:
    checkpoints = tmp_path / "runs" / "a"
    config = tmp_path / "server.toml"
    config.write_text(
        'address = "127.0.0.1:0"\nrounds = 0\nseed = 7\n'
        'strategy = "tests.reliability.momentum_strategy:make_strategy"\n'
        'checkpoint_dir = "runs/a"\n')
    zero = runner.invoke(app, ["server", "--config", str(config)])
    assert zero.exit_code == 2 and "rounds must be at least 1" in zero.output
    assert not checkpoints.exists()  # refused before anything was made
    config.write_text(config.read_text().replace("rounds = 0", "rounds = 1"))
    strategy = MomentumFedAvg()
    save_checkpoint(checkpoints, RoundCheckpoint(
        1, ndarrays_to_parameters(initial_arrays()), History(),
        strategy_type=type(strategy).__name__, strategy_state=strategy.state_dict()))
    again = runner.invoke(app, ["server", "--config", str(config)])
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(app, ["server", "--config", str(config), "--resume"])
    assert resumed.exit_code == 0, resumed.output  # finished: no client is needed
    loaded = load_latest(checkpoints)
    assert loaded is not None and loaded.strategy_type == "MomentumFedAvg"
    np.testing.assert_array_equal(parameters_to_ndarrays(loaded.parameters)[0],
                                  initial_arrays()[0])

"""A run's state file: one orchestrator per output directory, and what may be resumed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedsilo.deploy.errors import Conflict, NotFound
from fedsilo.deploy.run_state import RunState, read_run_state, run_is_alive


def test_a_second_orchestrator_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    first = RunState.begin(tmp_path, "run-1", resume=False)
    assert run_is_alive(read_run_state(tmp_path))
    with pytest.raises(Conflict, match="run-1 is still going"):
        RunState.begin(tmp_path, "run-2", resume=False)
    with pytest.raises(Conflict, match="still going"):
        RunState.begin(tmp_path, "run-2", resume=True)
    first.update(status="failed", error="boom")
    assert not run_is_alive(read_run_state(tmp_path))


def test_resume_takes_over_the_run_of_an_orchestrator_that_died(tmp_path: Path) -> None:
    state = RunState.begin(tmp_path, "run-1", resume=False)
    state.record_job("site1", "fl-site1-run-1")
    state.on_round(3, {"loss": 0.5, "accuracy": 0.9})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    raw = json.loads((tmp_path / "state.json").read_text())
    (tmp_path / "state.json").write_text(json.dumps({**raw, "pid": int(dead.stdout)}))
    assert not run_is_alive(read_run_state(tmp_path))  # its process is gone

    resumed = RunState.begin(tmp_path, "run-2", resume=True)
    assert resumed.run_id == "run-1"
    assert resumed.data["jobs"]["site1"]["name"] == "fl-site1-run-1"
    assert resumed.data["round"] == 3 and resumed.data["metrics"]["accuracy"] == 0.9
    resumed.update(status="finished")
    with pytest.raises(Conflict, match="finished; nothing to resume"):
        RunState.begin(tmp_path, "run-3", resume=True)
    assert RunState.begin(tmp_path, "run-3", resume=False).data["jobs"] == {}


def test_nothing_to_resume_where_no_run_was(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="nothing to resume"):
        RunState.begin(tmp_path, "run-1", resume=True)
    with pytest.raises(NotFound, match="no federation run"):
        read_run_state(tmp_path / "elsewhere")

"""Faults around writing checkpoints: a writer SIGKILLed mid-write, a directory that cannot be
written, a disk that fills up during the run, two runs on one directory."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.exceptions import CheckpointError
from fedsilo.server import Server
from fedsilo.server import server as server_module
from fedsilo.server.checkpoint import latest_round, load_latest
from tests.interop.harness import ProcessGroup, wait_until
from tests.reliability.local_clients import AddOne, sites
from tests.reliability.processes import HERE, environ


@pytest.mark.slow
def test_a_writer_killed_at_any_moment_leaves_a_consistent_checkpoint(tmp_path: Path) -> None:
    for attempt, after_round in enumerate((1, 3, 6, 10)):
        directory = tmp_path / f"run-{attempt}"
        with ProcessGroup(tmp_path) as group:
            writer = group.start(f"writer-{attempt}",
                                 [sys.executable, str(HERE / "checkpoint_writer.py"),
                                  str(directory)], environ())
            wait_until(lambda d=directory, r=after_round: (latest_round(d) or 0) >= r,  # type: ignore[misc]
                       60, f"round {after_round} to be written")
            os.kill(writer.popen.pid, signal.SIGKILL)
            assert writer.popen.wait(10) == -signal.SIGKILL
        loaded = load_latest(directory)
        assert loaded is not None and loaded.server_round >= after_round
        r = loaded.server_round
        arrays = parameters_to_ndarrays(loaded.parameters)
        assert arrays[0].shape == (1_000_000,) and np.all(arrays[0] == r)
        assert np.all(loaded.strategy_state["moment"] == r)
        assert loaded.history.losses_distributed == [(i, float(i)) for i in range(1, r + 1)]


def server(checkpoint_dir: Path) -> Server:
    manager, _ = sites([AddOne(), AddOne()])
    strategy = fl.server.strategy.FedAvg(
        initial_parameters=ndarrays_to_parameters([np.zeros(1)]))
    return Server(client_manager=manager, strategy=strategy, checkpoint_dir=checkpoint_dir)


def test_a_checkpoint_directory_that_cannot_be_written_stops_the_run_before_training(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the directory should be")
    federation = server(blocker)
    with pytest.raises(OSError):
        federation.fit(3, timeout=10)
    assert federation.parameters.tensors == []  # not even initialized: no round ran


def test_a_disk_full_in_one_round_is_logged_and_the_next_round_checkpoints_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_save = server_module.save_checkpoint

    def full_in_round_2(directory: Any, checkpoint: Any, **kwargs: Any) -> Path:
        if checkpoint.server_round == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(directory, checkpoint, **kwargs)

    monkeypatch.setattr(server_module, "save_checkpoint", full_in_round_2)
    caplog.set_level(logging.ERROR, logger="fedsilo.server")
    history, _ = server(tmp_path).fit(4, timeout=10)
    assert [r for r, _ in history.losses_distributed] == [1, 2, 3, 4]
    assert any("round 2: checkpoint not written" in r.getMessage() for r in caplog.records)
    loaded = load_latest(tmp_path)
    assert loaded is not None and loaded.server_round == 4
    np.testing.assert_array_equal(parameters_to_ndarrays(loaded.parameters)[0], [4.0])


HOLD_LOCK = """
import sys, time
from fedsilo.server.checkpoint import lock_directory
with lock_directory(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_on_the_same_directory_is_refused_until_the_first_dies(
    tmp_path: Path,
) -> None:
    checkpoints = tmp_path / "checkpoints"
    with ProcessGroup(tmp_path) as group:
        holder = group.start("holder", [sys.executable, "-c", HOLD_LOCK, str(checkpoints)],
                             environ())
        wait_until(lambda: "locked" in holder.output(), 30, "the first run to hold the lock")
        with pytest.raises(CheckpointError, match=f"in use .*pid {holder.popen.pid}"):
            server(checkpoints).fit(2, timeout=10)
        assert latest_round(checkpoints) is None  # the refused run wrote nothing
        os.kill(holder.popen.pid, signal.SIGKILL)  # a crash: the kernel drops its lock
        holder.popen.wait(10)
    history, _ = server(checkpoints).fit(2, timeout=10)
    assert [r for r, _ in history.losses_distributed] == [1, 2]
    assert latest_round(checkpoints) == 2

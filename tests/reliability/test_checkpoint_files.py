"""The checkpoint files: lossless round trip, no pickle, atomic replacement, pruning, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedsilo.common import Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.exceptions import CheckpointError
from fedsilo.server import History
from fedsilo.server import checkpoint as ckpt
from fedsilo.server.checkpoint import RoundCheckpoint, latest_round, load_latest, save_checkpoint


def arrays() -> list[np.ndarray]:
    return [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, -2], dtype=np.int64),
            np.array(3.5), np.zeros((0, 4), dtype=np.float64)]


def history() -> History:
    h = History()
    h.add_loss_centralized(0, 2.5)
    h.add_loss_distributed(1, math.nan)
    h.add_loss_distributed(2, 0.1 + 0.2)
    h.add_metrics_distributed_fit(1, {"flag": True, "count": 7, "blob": b"\x00\xff", "tag": "x"})
    h.add_metrics_distributed(2, {"accuracy": 1 / 3})
    h.add_metrics_centralized(0, {"auc": 0.75})
    return h


def state(server_round: int = 3, **changes: Any) -> RoundCheckpoint:
    fields: dict[str, Any] = {
        "server_round": server_round,
        "parameters": ndarrays_to_parameters(arrays()),
        "history": history(),
        "strategy_type": "FedAdam",
        "strategy_state": {"m": [np.ones(3), np.full((2, 2), 0.5, dtype=np.float32)],
                           "v": np.arange(4.0), "t": 3, "eps": [1e-9, None],
                           "nested": {"rdp": np.array([0.1, 0.2]), "orders": [2, 4]}},
        "client_manager_state": {"random_state": [3, [1, 2, 3], None]},
    }
    fields.update(changes)
    return RoundCheckpoint(**fields)


def test_round_trip_keeps_every_value_type_and_dtype(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, state())
    loaded = load_latest(tmp_path)
    assert loaded is not None and loaded.server_round == 3
    for got, want in zip(parameters_to_ndarrays(loaded.parameters), arrays(), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    original = history()
    assert loaded.history.losses_centralized == original.losses_centralized
    assert math.isnan(loaded.history.losses_distributed[0][1])
    assert loaded.history.losses_distributed[1] == (2, 0.1 + 0.2)  # exact, not rounded
    assert loaded.history.metrics_distributed_fit == original.metrics_distributed_fit
    assert loaded.history.metrics_distributed == original.metrics_distributed
    assert loaded.history.metrics_centralized == original.metrics_centralized
    s = loaded.strategy_state
    assert [a.dtype for a in s["m"]] == [np.float64, np.float32]
    np.testing.assert_array_equal(s["m"][1], np.full((2, 2), 0.5, dtype=np.float32))
    np.testing.assert_array_equal(s["v"], np.arange(4.0))
    np.testing.assert_array_equal(s["nested"]["rdp"], [0.1, 0.2])
    assert (s["t"], s["eps"], s["nested"]["orders"]) == (3, [1e-9, None], [2, 4])
    assert loaded.strategy_type == "FedAdam"
    assert loaded.client_manager_state == {"random_state": [3, [1, 2, 3], None]}


def test_files_are_json_and_plain_npy_readable_without_pickle(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, state())
    assert sorted(p.name for p in path.iterdir()) == ["parameters.npz", "state.json",
                                                      "strategy.npz"]
    manifest = json.loads((path / "state.json").read_text())
    assert manifest["server_round"] == 3 and manifest["strategy"]["type"] == "FedAdam"
    with np.load(path / "strategy.npz", allow_pickle=False) as npz:
        assert len(npz.files) == 4  # m[0], m[1], v, nested.rdp; nothing pickled
        assert all(npz[key].dtype != object for key in npz.files)


def test_state_that_would_need_pickle_is_refused_with_its_location(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="state.m.*object array"):
        save_checkpoint(tmp_path, state(strategy_state={"m": np.array([{}, 1], dtype=object)}))
    with pytest.raises(CheckpointError, match="state.s: set"):
        save_checkpoint(tmp_path, state(strategy_state={"s": {1, 2}}))
    with pytest.raises(CheckpointError, match="keys must be strings"):
        save_checkpoint(tmp_path, state(strategy_state={1: 2}))
    assert latest_round(tmp_path) is None
    assert list(tmp_path.iterdir()) == []  # nothing half-written stays behind


def test_a_crash_before_the_rename_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_checkpoint(tmp_path, state(2))

    def crash(src: object, dst: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint(tmp_path, state(3))
    monkeypatch.undo()
    assert latest_round(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round-000002"]


def test_a_staging_directory_left_by_a_killed_writer_is_ignored_then_removed(
    tmp_path: Path,
) -> None:
    save_checkpoint(tmp_path, state(2))
    leftover = tmp_path / ".round-000003.4242-deadbeef.tmp"
    leftover.mkdir()
    (leftover / "parameters.npz").write_bytes(b"PK\x03\x04 truncated")
    loaded = load_latest(tmp_path)
    assert loaded is not None and loaded.server_round == 2
    save_checkpoint(tmp_path, state(3))
    assert not leftover.exists()
    assert latest_round(tmp_path) == 3


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    for server_round in range(5):
        save_checkpoint(tmp_path, state(server_round), keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round-000003", "round-000004"]
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, state(5), keep=0)


def test_the_same_round_written_twice_replaces_the_first(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, state(4, strategy_state={"t": 1}))
    save_checkpoint(tmp_path, state(4, strategy_state={"t": 2}))
    loaded = load_latest(tmp_path)
    assert loaded is not None and loaded.strategy_state == {"t": 2}


def test_foreign_tensor_bytes_are_kept_exactly(tmp_path: Path) -> None:
    parameters = Parameters([b"\x00\x01\x02", b"", b"abc"], "torch.state_dict")
    save_checkpoint(tmp_path, state(parameters=parameters))
    loaded = load_latest(tmp_path)
    assert loaded is not None and loaded.parameters == parameters


def test_a_damaged_checkpoint_is_an_error_that_names_it(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, state(3))
    (path / "state.json").write_text('{"format": 1, "server_round": ')
    with pytest.raises(CheckpointError, match="round-000003.*remove that directory"):
        load_latest(tmp_path)
    (path / "state.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(CheckpointError, match="format 99"):
        load_latest(tmp_path)


def test_an_empty_or_missing_directory_holds_no_checkpoint(tmp_path: Path) -> None:
    assert load_latest(tmp_path / "absent") is None
    assert latest_round(tmp_path) is None
    (tmp_path / "round-notanumber").mkdir()
    (tmp_path / "round-000001").write_text("a file, not a checkpoint")
    assert latest_round(tmp_path) is None

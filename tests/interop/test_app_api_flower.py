"""fedsilo's app API against the newest Flower's, on the same inputs.

* The record and message checks: the same misuse raises the same exception class in both,
  with the same text (or, where Flower's names PyTorch, which fedsilo does not take, the
  same first sentence).
* The Message-API strategies: one deterministic app (the same code, only the package name
  changed) run with every strategy both have; Flower's through an in-process Grid in its
  own venv, fedsilo's with ``run_simulation`` on its process pool. Final arrays and every
  round's aggregated train and evaluate metrics agree to float32 rounding.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.interop.flower_envs import REPO_ROOT, FlowerEnv

CHECKS = Path(__file__).resolve().parent / "app_checks"
# Flower's texts that name PyTorch: fedsilo takes numpy arrays only, so its text differs
# after the first sentence.
FIRST_SENTENCE_ONLY = {"array_value_not_array", "array_int_key", "array_numpy_other_stype",
                       "message_no_destination", "message_str_node",
                       "message_content_and_error", "message_reply_with_type"}


def _probe(python: str, script: str, lib: str, env: dict[str, str] | None,
           timeout: float, *args: str) -> dict[str, Any]:
    done = subprocess.run([python, str(CHECKS / script), lib, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT, env=env)
    assert done.returncode == 0, f"{script} {lib} failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.flwr
@pytest.mark.timeout(120, func_only=True)
def test_record_and_message_checks_raise_what_flower_raises(flwr_newest_env: FlowerEnv) -> None:
    flower = _probe(flwr_newest_env.python, "records_probe.py", "flwr",
                    flwr_newest_env.environ(), 60)
    ours = _probe(flwr_newest_env.python, "records_probe.py", "fedsilo",
                  flwr_newest_env.environ(), 60)
    assert flower.keys() == ours.keys()
    assert flower["valid_records"] is None and ours["valid_records"] is None
    for case, raised in flower.items():
        if raised is None:
            continue
        got = ours[case]
        assert got is not None, f"{case}: Flower raises {raised}, fedsilo raises nothing"
        assert got[0] == raised[0], f"{case}: exception classes differ: {got[0]} {raised[0]}"
        if case in FIRST_SENTENCE_ONLY:
            assert got[1].split(". ")[0] == raised[1].split(". ")[0], case
        else:
            assert got[1] == raised[1], case


def _close(case: str, flower: Any, ours: Any) -> None:
    assert np.allclose(np.asarray(ours, dtype=float), np.asarray(flower, dtype=float),
                       rtol=2e-5, atol=1e-6), f"{case}: {ours} != {flower}"


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(600, func_only=True)
def test_message_api_strategies_match_flower(flwr_newest_env: FlowerEnv) -> None:
    flower = _probe(flwr_newest_env.python, "strategy_probe.py", "flwr",
                    flwr_newest_env.environ(), 300)
    ours = _probe(sys.executable, "strategy_probe.py", "fedsilo", None, 400)
    assert set(ours) == set(flower) and len(flower) == 13
    _same_outcomes(flower, ours)
    # The app moves the model: a comparison of untouched arrays would prove nothing.
    assert not np.allclose(np.asarray(flower["FedAvg"]["arrays"]["1"]), 0.5)


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(300, func_only=True)
def test_bulyan_with_a_malicious_node_matches_flower(flwr_newest_env: FlowerEnv) -> None:
    """Seven nodes, one assumed malicious: Bulyan keeps five by Multi-Krum and averages the
    three values closest to each coordinate's median."""
    flower = _probe(flwr_newest_env.python, "strategy_probe.py", "flwr",
                    flwr_newest_env.environ(), 200, "7")
    ours = _probe(sys.executable, "strategy_probe.py", "fedsilo", None, 200, "7")
    assert set(ours) == set(flower) == {"Bulyan", "MultiKrum"}
    _same_outcomes(flower, ours)
    # Bulyan's trimmed rule differs from MultiKrum's mean on these nodes.
    assert not np.allclose(np.asarray(flower["Bulyan"]["arrays"]["1"]),
                           np.asarray(flower["MultiKrum"]["arrays"]["1"]))


def _same_outcomes(flower: dict[str, Any], ours: dict[str, Any]) -> None:
    for name, theirs in flower.items():
        mine = ours[name]
        assert mine["arrays"].keys() == theirs["arrays"].keys(), name
        for key in theirs["arrays"]:
            _close(f"{name} arrays {key}", theirs["arrays"][key], mine["arrays"][key])
        for phase in ("train", "evaluate"):
            assert mine[phase].keys() == theirs[phase].keys() == {"1", "2", "3"}, name
            for server_round, metrics in theirs[phase].items():
                assert mine[phase][server_round].keys() == metrics.keys(), (name, phase)
                for key, value in metrics.items():
                    _close(f"{name} {phase} round {server_round} {key}", value,
                           mine[phase][server_round][key])


def _write_boosters(path: Path) -> dict[str, dict[str, str]]:
    """Boosters of 2 boosting rounds of 2 parallel trees, one per round and node, as hex of
    their JSON: the strategies must take each node's first boosting round only."""
    xgb = pytest.importorskip("xgboost")
    models: dict[str, dict[str, str]] = {}
    for server_round in range(1, 4):
        models[str(server_round)] = {}
        for node in range(3):
            rng = np.random.default_rng(10 * server_round + node)
            x = rng.normal(size=(120, 4))
            booster = xgb.train({"max_depth": 2, "num_parallel_tree": 2, "subsample": 0.8,
                                 "seed": 0, "nthread": 1},
                                xgb.DMatrix(x, label=(x[:, node] > 0).astype(float)),
                                num_boost_round=2)
            models[str(server_round)][str(node)] = bytes(booster.save_raw("json")).hex()
    path.write_text(json.dumps(models))
    return models


@pytest.mark.flwr
@pytest.mark.timeout(180, func_only=True)
def test_xgboost_strategies_give_flowers_model_bytes(flwr_newest_env: FlowerEnv,
                                                     tmp_path: Path) -> None:
    """FedXgbBagging and FedXgbCyclic on the same boosters: the same final booster, byte for
    byte, and the same per-round metrics, which fingerprint the model each node received
    and which node took part."""
    models = _write_boosters(tmp_path / "models.json")
    probe = str(tmp_path / "models.json")
    flower = _probe(flwr_newest_env.python, "xgb_probe.py", "flwr",
                    flwr_newest_env.environ(), 120, probe)
    ours = _probe(sys.executable, "xgb_probe.py", "fedsilo", None, 120, probe)
    assert set(flower) == set(ours) == {"FedXgbBagging", "FedXgbCyclic"}
    for name, theirs in flower.items():
        assert ours[name]["arrays"] == theirs["arrays"], name
    _same_outcomes({n: {**o, "arrays": {}} for n, o in flower.items()},
                   {n: {**o, "arrays": {}} for n, o in ours.items()})
    bagged = json.loads(bytes.fromhex(flower["FedXgbBagging"]["arrays"]["0"]))
    # The first reply is the start, whole (2 rounds of 2 trees); each of the 8 later
    # replies adds its first round of 2 parallel trees.
    assert len(bagged["learner"]["gradient_booster"]["model"]["trees"]) == 4 + 8 * 2
    last_turn = int(flower["FedXgbCyclic"]["train"]["3"]["node"])
    assert flower["FedXgbCyclic"]["arrays"]["0"] == models["3"][str(last_turn)]


@pytest.mark.flwr
@pytest.mark.timeout(120, func_only=True)
def test_client_mods_give_what_flowers_give(flwr_newest_env: FlowerEnv) -> None:
    flower = _probe(flwr_newest_env.python, "mods_probe.py", "flwr",
                    flwr_newest_env.environ(), 60)
    ours = _probe(sys.executable, "mods_probe.py", "fedsilo", None, 60)
    assert set(ours) == set(flower) == {"localdp_no_noise", "sizes"}
    for case in flower:
        for got, want in zip(ours[case], flower[case], strict=True):
            for a, b in zip(got, want, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6)
    # The update (3 + p on each of 10 coordinates) is longer than 2.5: clipping moved it.
    start = np.concatenate([np.ones(6), np.arange(4)])
    sent = np.concatenate([np.ravel(a) for a in ours["localdp_no_noise"][0]])
    assert np.isclose(np.linalg.norm(sent - start), 2.5)
    assert np.allclose(np.ravel(ours["sizes"][1][1]), np.arange(4) + 4)  # passed on as is

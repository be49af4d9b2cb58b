"""``run_simulation``: a ServerApp and a ClientApp on virtual nodes of the process pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsilo.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from fedsilo.clientapp import ClientApp
from fedsilo.serverapp import Grid, ServerApp
from fedsilo.serverapp.strategy import FedAvg, Result
from fedsilo.simulation import run_simulation

NUM_NODES = 3
ROUNDS = 3
client_app = ClientApp()
server_app = ServerApp()
RESULTS: list[Result] = []


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """Counts the rounds this node trained in ``context.state``; node 2 fails in round 2."""
    seen = context.state.get("seen", MetricRecord({"rounds": 0}))
    seen["rounds"] = int(seen["rounds"]) + 1  # type: ignore[call-overload]
    context.state["seen"] = seen
    partition = int(context.node_config["partition-id"])
    if partition == 2 and msg.content["config"]["server-round"] == 2:
        raise RuntimeError("node 2 fails in round 2")
    arrays = [a + partition for a in msg.content["arrays"].to_numpy_ndarrays()]
    metrics = MetricRecord({"rounds-seen": float(seen["rounds"]),  # type: ignore[arg-type]
                            "partitions": float(context.node_config["num-partitions"]),
                            "scale": float(context.run_config["scale"]),
                            "num-examples": 1})
    return Message(RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}),
                   reply_to=msg)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    RESULTS.append(FedAvg(fraction_evaluate=0.0, min_available_nodes=NUM_NODES).start(
        grid=grid, initial_arrays=ArrayRecord([np.zeros(2)]), num_rounds=ROUNDS,
        train_config=ConfigRecord()))


def test_nodes_keep_their_state_across_rounds_and_workers() -> None:
    RESULTS.clear()
    assert run_simulation(server_app, client_app, NUM_NODES, num_workers=2,
                          run_config={"scale": 2.5}) is None
    [result] = RESULTS
    train = result.train_metrics_clientapp
    # Every node trains every round; the state survives whichever worker ran it before.
    assert [train[r]["rounds-seen"] for r in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert train[1]["partitions"] == NUM_NODES and train[1]["scale"] == 2.5
    # Rounds 1 and 3 average the partitions 0, 1, 2; round 2 only 0 and 1 (node 2 failed).
    assert np.allclose(result.arrays["0"].numpy(), 1.0 + 0.5 + 1.0)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_workers_import_the_app_from_the_callers_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's actors do not start with the driver's sys.path: the app directory the caller
    made importable must be importable in them too."""
    from tests.cli.test_run import NUMPY_APP, _fedavg_weight

    monkeypatch.syspath_prepend(str(NUMPY_APP))
    monkeypatch.chdir(tmp_path)
    run_simulation("quickstart_numpy.server_app:app", "quickstart_numpy.client_app:app", 3,
                   backend_name="ray",
                   backend_config={"init_args": {"num_cpus": 2, "include_dashboard": False}},
                   run_config={"num-server-rounds": 2, "fraction-train": 1.0,
                               "min-available-nodes": 3, "lr": 0.5})
    model = np.load(tmp_path / "final_model.npz")
    assert np.allclose(model["arr_0"], _fedavg_weight(2, 0.5, 3))

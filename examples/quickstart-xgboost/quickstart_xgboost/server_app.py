"""The ServerApp: bagging of the nodes' trees; the final booster goes to
``final_model.json`` in the working directory."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from fedsilo.app import ArrayRecord, Context
from fedsilo.serverapp import Grid, ServerApp
from fedsilo.serverapp.strategy import FedXgbBagging
from quickstart_xgboost.task import booster_params

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the rounds from an empty model and save the final booster."""
    strategy = FedXgbBagging(fraction_train=float(context.run_config["fraction-train"]),
                             fraction_evaluate=float(context.run_config["fraction-evaluate"]),
                             min_available_nodes=int(context.run_config["min-available-nodes"]))
    result = strategy.start(grid=grid,
                            initial_arrays=ArrayRecord([np.frombuffer(b"", dtype=np.uint8)]),
                            num_rounds=int(context.run_config["num-server-rounds"]))
    booster = xgb.Booster(params=booster_params(context.run_config))
    booster.load_model(bytearray(result.arrays["0"].numpy().tobytes()))
    booster.save_model("final_model.json")
    if result.evaluate_metrics_clientapp:
        last = result.evaluate_metrics_clientapp[max(result.evaluate_metrics_clientapp)]
        print(f"final auc {last['auc']:.3f}")

"""The ServerApp: FedAvg of the logistic regressions; the final model goes to
``final_model.npz`` (coefficients, intercept) in the working directory."""

from __future__ import annotations

import numpy as np

from fedsilo.app import ArrayRecord, Context
from fedsilo.serverapp import Grid, ServerApp
from fedsilo.serverapp.strategy import FedAvg
from quickstart_sklearn.task import initial_parameters

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the rounds and save the final model."""
    strategy = FedAvg(min_available_nodes=int(context.run_config["min-available-nodes"]))
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(initial_parameters()),
                            num_rounds=int(context.run_config["num-server-rounds"]))
    np.savez("final_model", *result.arrays.to_numpy_ndarrays())
    if result.evaluate_metrics_clientapp:
        last = result.evaluate_metrics_clientapp[max(result.evaluate_metrics_clientapp)]
        print(f"final accuracy {last['eval_accuracy']:.3f}")

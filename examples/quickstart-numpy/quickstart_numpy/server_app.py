"""The ServerApp: FedAvg for ``num-server-rounds`` rounds; the final model goes to
``final_model.npz`` in the working directory."""

from __future__ import annotations

import numpy as np

from fedsilo.app import ArrayRecord, ConfigRecord, Context
from fedsilo.serverapp import Grid, ServerApp
from fedsilo.serverapp.strategy import FedAvg
from quickstart_numpy.task import initial_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the rounds and save the final model."""
    num_rounds = int(context.run_config["num-server-rounds"])
    strategy = FedAvg(fraction_train=float(context.run_config["fraction-train"]),
                      min_available_nodes=int(context.run_config["min-available-nodes"]))
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_model()),
        num_rounds=num_rounds,
        train_config=ConfigRecord({"lr": float(context.run_config["lr"])}),
    )
    np.savez("final_model", *result.arrays.to_numpy_ndarrays())

"""The ServerApp: bagging of the sites' trees (FedXgbBagging), the global model scored on
the server's own test set before the first round and after each, and the final booster
saved as ``model.json`` in the run's output directory.

Its Context's ``node_config`` is the server's: ``data-dir`` (its ``test.csv``, which no site
sees), ``output-dir`` and ``min-sites`` (the sites every round waits for).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from fedsilo.app import ArrayRecord, Context, MetricRecord
from fedsilo.serverapp import Grid, ServerApp
from fedsilo.serverapp.strategy import FedXgbBagging, booster_record
from fraud_xgboost.task import booster_params, load_booster, test_rows

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the rounds from a model with no trees, then save the final booster."""
    run_config, node_config = context.run_config, context.node_config
    params = booster_params(run_config)
    X_test, y_test = test_rows(str(node_config["data-dir"]))
    test = xgb.DMatrix(X_test, label=y_test)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        booster = load_booster(arrays, params)
        if booster is None:  # round 0: no trees yet
            return None
        fraud = booster.predict(test)
        return MetricRecord({
            "loss": float(log_loss(y_test, fraud, labels=[0, 1])),
            "roc_auc": float(roc_auc_score(y_test, fraud)),
            "accuracy": float(accuracy_score(y_test, (fraud > 0.5).astype(np.int64))),
        })

    sites = int(node_config.get("min-sites", 2))
    strategy = FedXgbBagging(fraction_train=1.0,
                             fraction_evaluate=float(run_config["fraction-evaluate"]),
                             min_available_nodes=sites, min_train_nodes=sites,
                             min_evaluate_nodes=sites if run_config["fraction-evaluate"] else 0)
    result = strategy.start(grid=grid, initial_arrays=booster_record(b""),
                            num_rounds=int(run_config["num-server-rounds"]),
                            evaluate_fn=evaluate)
    final = load_booster(result.arrays, params)
    if final is not None:
        output = Path(str(node_config["output-dir"]))
        output.mkdir(parents=True, exist_ok=True)
        final.save_model(output / "model.json")

"""The ClientApp: a site grows trees on its own rows from the global model and replies with
the new trees only; it scores the global model on its validation rows and keeps it.

Its Context's ``node_config`` holds what the site set: ``channel-train`` (its rows, which
never leave it) and ``model-dir`` (what stays at the site when the job ends: the latest
global model as ``model.json``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from fedsilo.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from fedsilo.clientapp import ClientApp
from fraud_xgboost.task import booster_params, load_booster, site_rows

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Grow ``local-epochs`` boosting rounds from the global model (from nothing in round 1)
    and reply with those trees."""
    train_rows, _ = site_rows(str(context.node_config["channel-train"]))
    params = booster_params(context.run_config)
    local_rounds = int(context.run_config["local-epochs"])
    booster = load_booster(msg.content["arrays"], params)
    if booster is None:
        booster = xgb.train(params, train_rows, num_boost_round=local_rounds)
    else:
        for _ in range(local_rounds):
            booster.update(train_rows, booster.num_boosted_rounds())
        grown = booster.num_boosted_rounds()
        booster = booster[grown - local_rounds:grown]
    model = np.frombuffer(booster.save_raw("json"), dtype=np.uint8)
    content = RecordDict({"arrays": ArrayRecord([model]),
                          "metrics": MetricRecord({"num-examples": train_rows.num_row()})})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The global model's ROC-AUC on the site's validation rows; the model is kept as
    ``model.json`` in the site's model directory (the last one is the federation's)."""
    _, valid_rows = site_rows(str(context.node_config["channel-train"]))
    booster = load_booster(msg.content["arrays"], booster_params(context.run_config))
    if booster is None:
        raise ValueError("the evaluate message carries no model")
    auc = float(roc_auc_score(valid_rows.get_label(), booster.predict(valid_rows)))
    model_dir = str(context.node_config.get("model-dir", ""))
    if model_dir:
        Path(model_dir).mkdir(parents=True, exist_ok=True)
        booster.save_model(Path(model_dir) / "model.json")
    metrics = MetricRecord({"roc_auc": auc, "num-examples": valid_rows.num_row()})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

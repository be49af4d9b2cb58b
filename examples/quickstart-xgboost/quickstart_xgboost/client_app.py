"""The ClientApp: boost the global model on the node's partition; reply with the trees
grown this round (the booster's JSON bytes, one uint8 Array)."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from fedsilo.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from fedsilo.clientapp import ClientApp
from quickstart_xgboost.task import booster_params, load_partition

app = ClientApp()


def _data(context: Context) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    return load_partition(int(context.node_config["partition-id"]),
                          int(context.node_config["num-partitions"]),
                          int(context.run_config["data.seed"]),
                          int(context.run_config["data.samples-per-node"]))


def _global_model(msg: Message, params: dict[str, object]) -> xgb.Booster:
    booster = xgb.Booster(params=params)
    booster.load_model(bytearray(msg.content["arrays"]["0"].numpy().tobytes()))
    return booster


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Grow ``local-epochs`` boosting rounds from the global model (from nothing in round
    1) and reply with those new trees only."""
    train_data, _ = _data(context)
    params = booster_params(context.run_config)
    local_rounds = int(context.run_config["local-epochs"])
    if int(msg.content["config"]["server-round"]) == 1:
        booster = xgb.train(params, train_data, num_boost_round=local_rounds)
    else:
        booster = _global_model(msg, params)
        for _ in range(local_rounds):
            booster.update(train_data, booster.num_boosted_rounds())
        booster = booster[booster.num_boosted_rounds() - local_rounds:
                          booster.num_boosted_rounds()]
    model = np.frombuffer(booster.save_raw("json"), dtype=np.uint8)
    content = RecordDict({"arrays": ArrayRecord([model]),
                          "metrics": MetricRecord({"num-examples": train_data.num_row()})})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The global model's AUC on the node's validation split."""
    _, valid_data = _data(context)
    booster = _global_model(msg, booster_params(context.run_config))
    report = booster.eval_set([(valid_data, "valid")], iteration=booster.num_boosted_rounds() - 1)
    auc = float(report.split("\t")[1].split(":")[1])
    metrics = MetricRecord({"auc": auc, "num-examples": valid_data.num_row()})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

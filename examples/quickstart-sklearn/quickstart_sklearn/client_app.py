"""The ClientApp: a few iterations of logistic regression on the node's partition."""

from __future__ import annotations

from fedsilo.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from fedsilo.clientapp import ClientApp
from quickstart_sklearn.task import (
    fit,
    get_parameters,
    load_partition,
    new_model,
    score,
    set_parameters,
)

app = ClientApp()


def _data(context: Context):  # type: ignore[no-untyped-def]
    return load_partition(int(context.node_config["partition-id"]),
                          int(context.node_config["num-partitions"]),
                          int(context.run_config["data.seed"]),
                          int(context.run_config["data.samples-per-node"]))


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train from the global model; reply with the new parameters."""
    x_train, y_train, _, _ = _data(context)
    model = new_model(str(context.run_config["penalty"]),
                      int(context.run_config["local-epochs"]))
    set_parameters(model, msg.content["arrays"].to_numpy_ndarrays())
    fit(model, x_train, y_train)
    loss, accuracy = score(model, x_train, y_train)
    metrics = MetricRecord({"train_loss": loss, "train_accuracy": accuracy,
                            "num-examples": len(x_train)})
    content = RecordDict({"arrays": ArrayRecord(get_parameters(model)), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Score the global model on the node's test split."""
    _, _, x_test, y_test = _data(context)
    model = new_model(str(context.run_config["penalty"]), 1)
    set_parameters(model, msg.content["arrays"].to_numpy_ndarrays())
    loss, accuracy = score(model, x_test, y_test)
    metrics = MetricRecord({"eval_loss": loss, "eval_accuracy": accuracy,
                            "num-examples": len(x_test)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

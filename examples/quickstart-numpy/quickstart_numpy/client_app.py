"""The ClientApp: one gradient step towards the node's own target per round."""

from __future__ import annotations

from fedsilo.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from fedsilo.clientapp import ClientApp
from quickstart_numpy.task import local_target, loss, num_examples

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Step from the received model towards this partition's target."""
    partition_id = int(context.node_config["partition-id"])
    model = msg.content["arrays"].to_numpy_ndarrays()
    lr = float(msg.content["config"]["lr"])
    target = local_target(model, partition_id)
    trained = [m - lr * (m - t) for m, t in zip(model, target, strict=True)]
    metrics = {"train_loss": loss(trained, target), "num-examples": num_examples(partition_id)}
    content = RecordDict({"arrays": ArrayRecord(trained), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The received model's loss on this partition."""
    partition_id = int(context.node_config["partition-id"])
    model = msg.content["arrays"].to_numpy_ndarrays()
    metrics = {"eval_loss": loss(model, local_target(model, partition_id)),
               "num-examples": num_examples(partition_id)}
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

"""Messages as the legacy protocol carries them: train as FitIns/FitRes, evaluate as
EvaluateIns/EvaluateRes.

Every transport fedsilo has (gRPC streams, simulation workers, in-process clients)
carries the legacy instructions, so a ServerApp's messages travel as those:

* an instruction's content is one ArrayRecord (the parameters) and at most one
  ConfigRecord (the config, scalar values only);
* a train reply is one ArrayRecord and one MetricRecord holding ``num-examples``; its
  other metrics become ``FitRes.metrics``;
* an evaluate reply is one MetricRecord holding ``num-examples``; ``loss`` travels as
  ``EvaluateRes.loss`` (a reply without a ``loss`` metric is marked so that none is added
  back on the server).

Content that these cannot carry raises ``LegacyIncompatible`` naming what does not fit.
Tensor bytes pass through unchanged both ways: nothing is decoded or copied here.
"""

from __future__ import annotations

from fedsilo.app._array import NUMPY_STYPE, Array
from fedsilo.app._recorddict import RecordDict
from fedsilo.app._records import ArrayRecord, ConfigRecord, MetricRecord
from fedsilo.common.parameter import bytes_to_ndarray
from fedsilo.common.typing import (
    Code,
    Config,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    Status,
)

__all__ = [
    "NO_LOSS_KEY",
    "NUM_EXAMPLES_KEY",
    "LegacyIncompatible",
    "arrays_to_parameters",
    "evaluate_reply_to_res",
    "evaluateres_to_content",
    "fitres_to_content",
    "instruction_to_content",
    "parameters_to_arrays",
    "split_instruction",
    "train_reply_to_res",
]

NUM_EXAMPLES_KEY = "num-examples"
NO_LOSS_KEY = "fedsilo.no-loss"
"""Metric a fedsilo ClientApp adds to an evaluate reply that has no ``loss`` metric."""


class LegacyIncompatible(ValueError):
    """A message whose content the legacy instructions cannot carry."""


def arrays_to_parameters(record: ArrayRecord) -> Parameters:
    """The record's tensors as Parameters; the ``.npy`` bytes are shared, not copied."""
    for key, array in record.items():
        if array.stype != NUMPY_STYPE:
            raise LegacyIncompatible(
                f"array {key!r} is serialized as {array.stype!r}; the legacy protocol carries "
                f"{NUMPY_STYPE!r} only")
    return Parameters(tensors=[a.data for a in record.values()], tensor_type=NUMPY_STYPE)


def parameters_to_arrays(parameters: Parameters, keys: list[str] | None = None,
                         decoded: NDArrays | None = None) -> ArrayRecord:
    """Parameters as an ArrayRecord (keys ``"0"``, ``"1"``, ... unless given); the bytes
    are shared. Each header is read for the dtype and shape, unless the tensors were
    ``decoded`` already."""
    if keys is None or len(keys) != len(parameters.tensors):
        keys = [str(i) for i in range(len(parameters.tensors))]
    if decoded is None or len(decoded) != len(parameters.tensors):
        decoded = [bytes_to_ndarray(tensor) for tensor in parameters.tensors]
    record = ArrayRecord()
    for key, tensor, view in zip(keys, parameters.tensors, decoded, strict=True):
        record[key] = Array.from_npy(str(view.dtype), tuple(view.shape), tensor)
    return record


def _scalar_config(record: ConfigRecord | None, what: str) -> Config:
    if record is None:
        return {}
    lists = sorted(k for k, v in record.items() if isinstance(v, list))
    if lists:
        raise LegacyIncompatible(f"{what} holds lists ({', '.join(lists)}); the legacy "
                                 "protocol carries scalar config values only")
    return dict(record)  # type: ignore[arg-type]


def _one(content: RecordDict, kind: type, what: str) -> tuple[str, object] | None:
    found = [(k, v) for k, v in content.items() if isinstance(v, kind)]
    if len(found) > 1:
        raise LegacyIncompatible(f"{what} holds {len(found)} {kind.__name__}s "
                                 f"({', '.join(k for k, _ in found)}); the legacy protocol "
                                 f"carries one")
    return found[0] if found else None


def split_instruction(content: RecordDict, message_type: str) -> tuple[ArrayRecord, Config]:
    """The ArrayRecord and the config of a train or evaluate instruction."""
    what = f"the {message_type} message"
    if content.metric_records:
        raise LegacyIncompatible(f"{what} holds a MetricRecord; the legacy protocol carries "
                                 "parameters and a config only")
    arrays = _one(content, ArrayRecord, what)
    config = _one(content, ConfigRecord, what)
    return (arrays[1] if arrays else ArrayRecord(),  # type: ignore[return-value]
            _scalar_config(config[1] if config else None, what))  # type: ignore[arg-type]


def instruction_to_content(ins: FitIns | EvaluateIns) -> RecordDict:
    """What a ClientApp receives for a legacy instruction: ``arrays`` and ``config``."""
    return RecordDict({"arrays": parameters_to_arrays(ins.parameters),
                       "config": ConfigRecord(dict(ins.config))})  # type: ignore[arg-type]


def _metrics(metrics: dict[str, Scalar]) -> tuple[MetricRecord, ConfigRecord]:
    numbers: MetricRecord = MetricRecord()
    others = ConfigRecord()
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            others[key] = value
        else:
            numbers[key] = value
    return numbers, others


def fitres_to_content(res: FitRes, keys: list[str] | None = None,
                      decoded: NDArrays | None = None) -> RecordDict:
    """A legacy training result as a train reply's content."""
    numbers, others = _metrics(res.metrics)
    numbers[NUM_EXAMPLES_KEY] = res.num_examples
    content = RecordDict({"arrays": parameters_to_arrays(res.parameters, keys, decoded),
                          "metrics": numbers})
    if others:
        content["config"] = others
    return content


def evaluateres_to_content(res: EvaluateRes) -> RecordDict:
    """A legacy evaluation as an evaluate reply's content."""
    metrics = dict(res.metrics)
    marked = bool(metrics.pop(NO_LOSS_KEY, False))
    numbers, others = _metrics(metrics)
    if not marked and "loss" not in numbers:
        numbers["loss"] = float(res.loss)
    numbers[NUM_EXAMPLES_KEY] = res.num_examples
    content = RecordDict({"metrics": numbers})
    if others:
        content["config"] = others
    return content


def _reply_metrics(content: RecordDict, what: str) -> tuple[int, dict[str, Scalar]]:
    found = _one(content, MetricRecord, what)
    metrics: dict[str, Scalar] = {}
    if found is not None:
        for key, value in found[1].items():  # type: ignore[attr-defined]
            if isinstance(value, list):
                raise LegacyIncompatible(f"{what} holds the list metric {key!r}; the legacy "
                                         "protocol carries scalar metrics only")
            metrics[key] = value
    config = _one(content, ConfigRecord, what)
    if config is not None:
        metrics.update(_scalar_config(config[1], what))  # type: ignore[arg-type]
    count = metrics.pop(NUM_EXAMPLES_KEY, 0)
    if isinstance(count, bool) or not isinstance(count, int | float) or count < 0:
        raise LegacyIncompatible(f"{what}'s {NUM_EXAMPLES_KEY} must be a non-negative number, "
                                 f"got {count!r}")
    return int(count), metrics


def train_reply_to_res(content: RecordDict) -> FitRes:
    """A ClientApp's train reply as a legacy FitRes."""
    what = "the train reply"
    arrays = _one(content, ArrayRecord, what)
    count, metrics = _reply_metrics(content, what)
    parameters = (arrays_to_parameters(arrays[1]) if arrays  # type: ignore[arg-type]
                  else Parameters([], NUMPY_STYPE))
    return FitRes(Status(Code.OK, "Success"), parameters, count, metrics)


def evaluate_reply_to_res(content: RecordDict) -> EvaluateRes:
    """A ClientApp's evaluate reply as a legacy EvaluateRes."""
    what = "the evaluate reply"
    if content.array_records:
        raise LegacyIncompatible(f"{what} holds an ArrayRecord; the legacy protocol carries "
                                 "metrics only")
    count, metrics = _reply_metrics(content, what)
    loss = metrics.get("loss")
    if isinstance(loss, int | float) and not isinstance(loss, bool):
        return EvaluateRes(Status(Code.OK, "Success"), float(loss), count, metrics)
    metrics[NO_LOSS_KEY] = True
    return EvaluateRes(Status(Code.OK, "Success"), 0.0, count, metrics)

"""Message-API Bulyan: Multi-Krum keeps the ``n - 2f`` most central replies, then each
coordinate is the mean of the ``n - 4f`` kept values closest to their median; checked
against the formula written out here with numpy."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fedsilo.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from fedsilo.serverapp.strategy import Bulyan


def _replies(models: list[np.ndarray]) -> list[Message]:
    replies = []
    for node, model in enumerate(models, start=1):
        asked = Message(RecordDict(), node, MessageType.TRAIN)
        content = RecordDict({"arrays": ArrayRecord([model]), "metrics": MetricRecord(
            {"num-examples": 10, "loss": float(node)})})
        replies.append(Message(content, reply_to=asked))
    return replies


def _by_formula(models: list[np.ndarray], f: int) -> tuple[np.ndarray, list[int]]:
    n = len(models)
    flat = np.stack([m.ravel() for m in models])
    distances = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(axis=2)
    scores = [np.sort(np.delete(distances[i], i))[:n - f - 2].sum() for i in range(n)]
    kept = sorted(np.argsort(scores, kind="stable")[:n - 2 * f].tolist())
    stacked = flat[kept]
    median = np.median(stacked, axis=0)
    closest = np.argsort(np.abs(stacked - median), axis=0, kind="stable")[:n - 4 * f]
    mean = np.take_along_axis(stacked, closest, axis=0).mean(axis=0)
    return mean.reshape(models[0].shape), kept


def test_bulyan_is_multikrum_then_the_mean_closest_to_the_median() -> None:
    rng = np.random.default_rng(3)
    models = [rng.normal(size=(3, 2)) for _ in range(6)] + [np.full((3, 2), 40.0)]
    arrays, metrics = Bulyan(num_malicious_nodes=1).aggregate_train(1, _replies(models))
    expected, kept = _by_formula(models, 1)
    assert 6 not in kept  # the outlier is not among the five kept
    assert arrays is not None and np.allclose(arrays["0"].numpy(), expected)
    assert metrics == {"loss": pytest.approx(np.mean([k + 1 for k in kept]))}


def test_bulyan_keeps_the_global_model_without_4f_plus_3_replies(
        caplog: pytest.LogCaptureFixture) -> None:
    models = [np.full(2, float(i)) for i in range(6)]
    with caplog.at_level(logging.WARNING, logger="fedsilo.server"):
        assert Bulyan(num_malicious_nodes=1).aggregate_train(1, _replies(models)) == (None, None)
    assert "at least 4 * num_malicious_nodes + 3 = 7 replies, got 6" in caplog.text

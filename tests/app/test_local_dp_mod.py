"""LocalDpMod against its formula: the update clipped to the node's norm, then Gaussian noise
of standard deviation sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon on every coordinate.
(Without noise it equals Flower's LocalDpMod: tests/interop/test_app_api_flower.py.)"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from fedsilo.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from fedsilo.clientapp import ClientApp, node_context
from fedsilo.clientapp.mod import LocalDpMod, arrays_size_mod, message_size_mod

SIZE = 200_000


def _app(mods: list[object], step: float) -> ClientApp:
    app = ClientApp(mods=mods)  # type: ignore[arg-type]

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        arrays = [a + step for a in msg.content["arrays"].to_numpy_ndarrays()]
        return Message(RecordDict({"arrays": ArrayRecord(arrays),
                                   "metrics": MetricRecord({"num-examples": 1})}),
                       reply_to=msg)

    return app


def _train(app: ClientApp, start: list[np.ndarray]) -> tuple[Message, list[np.ndarray]]:
    msg = Message(RecordDict({"arrays": ArrayRecord(start), "config": ConfigRecord({})}), 1,
                  "train")
    reply = app(msg, node_context(1, {}))
    assert not reply.has_error(), reply.error
    return reply, reply.content["arrays"].to_numpy_ndarrays()


def test_the_update_is_clipped_then_noised_as_the_formula_says() -> None:
    start = [np.zeros(SIZE), np.full(3, 2.0)]
    mod = LocalDpMod(clipping_norm=1.0, sensitivity=0.5, epsilon=2.0, delta=1e-5, seed=3)
    _, sent = _train(_app([mod], step=0.01), start)
    want_stddev = 0.5 * math.sqrt(2 * math.log(1.25 / 1e-5)) / 2.0
    assert mod.stddev == pytest.approx(want_stddev)
    # The update (0.01 everywhere, norm 0.01 sqrt(SIZE + 3) > 1) scaled to norm 1 ...
    scale = 1.0 / (0.01 * math.sqrt(SIZE + 3))
    noise = sent[0] - 0.01 * scale
    # ... plus noise that has the formula's spread and no bias.
    assert np.std(noise) == pytest.approx(want_stddev, rel=0.01)
    assert abs(np.mean(noise)) < 5 * want_stddev / math.sqrt(SIZE)


def test_without_sensitivity_it_only_clips_and_a_short_update_goes_as_is() -> None:
    start = [np.array([1.0, 1.0])]
    _, sent = _train(_app([LocalDpMod(1.0, 0.0, 1.0, 1e-5)], step=3.0), start)
    assert np.allclose(sent[0] - start[0], [1 / math.sqrt(2)] * 2)  # (3, 3) to norm 1
    _, sent = _train(_app([LocalDpMod(10.0, 0.0, 1.0, 1e-5)], step=3.0), start)
    assert np.allclose(sent[0], [4.0, 4.0])


@pytest.mark.parametrize(("arguments", "message"), [
    ((0.0, 1.0, 1.0, 1e-5), "clipping norm"),
    ((1.0, -1.0, 1.0, 1e-5), "sensitivity"),
    ((1.0, 1.0, 0.0, 1e-5), "Epsilon"),
    ((1.0, 1.0, 1.0, 0.0), "Delta"),
    ((1.0, 1.0, 1.0, 1.0), "Delta"),
])
def test_settings_that_give_no_guarantee_are_refused(
        arguments: tuple[float, float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalDpMod(*arguments)


def test_the_size_mods_log_and_change_nothing(caplog: pytest.LogCaptureFixture) -> None:
    start = [np.zeros((4, 5), np.float32)]
    with caplog.at_level(logging.INFO, logger="fedsilo.client"):
        reply, sent = _train(_app([message_size_mod, arrays_size_mod], step=1.0), start)
    assert np.array_equal(sent[0], np.ones((4, 5), np.float32))
    text = caplog.text
    assert f"Outgoing message size: {reply.content.count_bytes()} bytes" in text
    weight = reply.content["arrays"].count_bytes()  # the .npy bytes, header included
    assert weight > 80
    assert f"ArrayRecords sent: {{'arrays': {{'elements': 20, 'bytes': {weight}}}}}" in text

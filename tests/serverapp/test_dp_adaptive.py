"""Message-API DP wrappers with adaptive clipping: updates clipped to the current norm, the
aggregate of the clipped updates, and the norm moved by ``C exp(lr (c - gamma))`` with ``c``
the share of clipped updates (no noise, so every number is checked by hand)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from fedsilo.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from fedsilo.clientapp import ClientApp
from fedsilo.clientapp.mod import adaptiveclipping_mod
from fedsilo.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    FedAvg,
)
from tests.app.test_clientapp_and_grid import in_process_grid

# Updates from a zero model with L2 norms 1, 2, 3 and 4.
UPDATES = [np.array([0.6, 0.8]) * n for n in (1.0, 2.0, 3.0, 4.0)]


class NodeList:
    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


def _replies(sent: list[Message], norm_bits: list[int | None] | None = None) -> list[Message]:
    replies = []
    for i, (asked, update) in enumerate(zip(sent, UPDATES, strict=True)):
        metrics = MetricRecord({"num-examples": 10})
        if norm_bits is not None and norm_bits[i] is not None:
            metrics["norm_bit"] = norm_bits[i]
        replies.append(Message(RecordDict({"arrays": ArrayRecord([update]), "metrics": metrics}),
                               reply_to=asked))
    return replies


def test_server_side_clips_to_the_current_norm_then_moves_it() -> None:
    strategy = DifferentialPrivacyServerSideAdaptiveClipping(
        FedAvg(min_available_nodes=4), noise_multiplier=0.0, num_sampled_clients=4,
        initial_clipping_norm=2.5, target_clipped_quantile=0.25, clip_norm_lr=0.2)
    sent = list(strategy.configure_train(1, ArrayRecord([np.zeros(2)]), ConfigRecord(),
                                         NodeList([1, 2, 3, 4])))  # type: ignore[arg-type]
    arrays, _ = strategy.aggregate_train(1, _replies(sent))
    clipped = [u * min(1.0, 2.5 / np.linalg.norm(u)) for u in UPDATES]
    assert arrays is not None and np.allclose(arrays["0"].numpy(), np.mean(clipped, axis=0))
    # Two of four updates (norms 3 and 4) were clipped: c = 0.5 against gamma = 0.25.
    assert strategy.clipping_norm == pytest.approx(2.5 * math.exp(0.2 * (0.5 - 0.25)))


def test_client_side_sends_the_norm_and_moves_it_by_the_reported_bits(
        caplog: pytest.LogCaptureFixture) -> None:
    strategy = DifferentialPrivacyClientSideAdaptiveClipping(
        FedAvg(min_available_nodes=4), noise_multiplier=0.0, num_sampled_clients=4,
        initial_clipping_norm=1.0, target_clipped_quantile=0.5, clip_norm_lr=0.2)
    sent = list(strategy.configure_train(1, ArrayRecord([np.zeros(2)]), ConfigRecord(),
                                         NodeList([1, 2, 3, 4])))  # type: ignore[arg-type]
    assert all(m.content["config"]["clipping_norm"] == 1.0 for m in sent)
    with caplog.at_level(logging.WARNING, logger="fedsilo.server"):
        arrays, _ = strategy.aggregate_train(1, _replies(sent, [1, 1, 1, None]))
    assert "has no 'norm_bit' metric" in caplog.text
    assert arrays is not None and np.allclose(arrays["0"].numpy(), np.mean(UPDATES[:3], axis=0))
    # Three of the three counted updates were clipped: the norm grows.
    assert strategy.clipping_norm == pytest.approx(math.exp(0.2 * (1.0 - 0.5)))
    again = list(strategy.configure_train(2, ArrayRecord([np.zeros(2)]), ConfigRecord(),
                                          NodeList([1, 2, 3, 4])))  # type: ignore[arg-type]
    assert again[0].content["config"]["clipping_norm"] == pytest.approx(strategy.clipping_norm)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"initial_clipping_norm": 0.0}, "initial clipping norm should be a positive value"),
    ({"target_clipped_quantile": 1.5}, "target clipped quantile must be in [0, 1]"),
    ({"clip_norm_lr": 0.0}, "learning rate must be positive"),
    ({"clipped_count_stddev": -1.0}, "`clipped_count_stddev` must be non-negative"),
    ({"noise_multiplier": -1.0}, "noise multiplier should be a non-negative value"),
])
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    settings = {"noise_multiplier": 0.0, "num_sampled_clients": 4, **kwargs}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DifferentialPrivacyServerSideAdaptiveClipping(FedAvg(), **settings)  # type: ignore


def test_client_side_wrapper_with_the_nodes_mod_over_rounds() -> None:
    """Nodes clip with ``adaptiveclipping_mod`` and report ``norm_bit``; the norm the server
    sends follows the bits round after round."""
    app = ClientApp(mods=[adaptiveclipping_mod])
    sent_norms: list[float] = []

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        sent_norms.append(float(msg.content["config"]["clipping_norm"]))
        received = msg.content["arrays"].to_numpy_ndarrays()
        update = UPDATES[int(context.node_config["partition-id"])]
        return Message(RecordDict({"arrays": ArrayRecord([received[0] + update]),
                                   "metrics": MetricRecord({"num-examples": 1})}),
                       reply_to=msg)

    grid = in_process_grid(app, 4)
    try:
        strategy = DifferentialPrivacyClientSideAdaptiveClipping(
            FedAvg(fraction_evaluate=0.0, min_available_nodes=4), noise_multiplier=0.0,
            num_sampled_clients=4, initial_clipping_norm=2.5, target_clipped_quantile=0.0,
            clip_norm_lr=0.5)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord([np.zeros(2)]),
                                num_rounds=2)
    finally:
        grid.close()
    # Round 1 clips norms 3 and 4 to 2.5 (c = 0.5): the norm becomes 2.5 e^(0.25) ~ 3.21,
    # and round 2 clips only the update of norm 4 (c = 0.25).
    first = 2.5 * math.exp(0.5 * 0.5)
    assert sorted(set(sent_norms)) == [2.5, pytest.approx(first)]
    assert strategy.clipping_norm == pytest.approx(first * math.exp(0.5 * 0.25))
    round_1 = np.mean([u * min(1.0, 2.5 / np.linalg.norm(u)) for u in UPDATES], axis=0)
    round_2 = np.mean([u * min(1.0, first / np.linalg.norm(u)) for u in UPDATES], axis=0)
    assert np.allclose(result.arrays["0"].numpy(), round_1 + round_2)

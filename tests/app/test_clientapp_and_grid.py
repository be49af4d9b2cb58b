"""ClientApp forms and mods, and the Grid over the round loop's proxies (in-process nodes)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from fedsilo.clientapp import ClientApp, ClientAppClient, node_context
from fedsilo.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from fedsilo.server.client_manager import SimpleClientManager
from fedsilo.serverapp import ProxyGrid, ServerApp, ServerAppComponents, run_server_app
from fedsilo.serverapp.strategy import FedAvg, Result, Strategy
from fedsilo.simulation import InProcessClientProxy


def _reply(msg: Message, arrays: list[np.ndarray], **metrics: float) -> Message:
    return Message(RecordDict({"arrays": ArrayRecord(arrays),
                               "metrics": MetricRecord(dict(metrics))}), reply_to=msg)


def in_process_grid(app: ClientApp, num_nodes: int) -> ProxyGrid:
    """A Grid of ``num_nodes`` nodes running ``app`` in this process; node ``p + 1`` is
    partition ``p``."""
    manager = SimpleClientManager()
    for p in range(num_nodes):
        manager.register(InProcessClientProxy(str(p), ClientAppClient(
            app, node_context(p + 1, {"partition-id": p, "num-partitions": num_nodes}))))
    return ProxyGrid(manager)


def _train_message(arrays: list[np.ndarray], **config: float) -> Message:
    return Message(RecordDict({"arrays": ArrayRecord(arrays),
                               "config": ConfigRecord(dict(config))}), 1, "train")


def _context() -> Context:
    return node_context(1, {"partition-id": 0, "num-partitions": 1})


def test_decorators_route_by_type_and_action() -> None:
    app = ClientApp()

    @app.query()
    def default(msg: Message, context: Context) -> Message:
        return Message(RecordDict({"m": MetricRecord({"which": 0})}), reply_to=msg)

    @app.query("stats")
    def stats(msg: Message, context: Context) -> Message:
        return Message(RecordDict({"m": MetricRecord({"which": 1})}), reply_to=msg)

    def ask(message_type: str) -> int:
        reply = app(Message(RecordDict(), 1, message_type), _context())
        return int(reply.content["m"]["which"])

    assert (ask("query"), ask("query.stats")) == (0, 1)
    with pytest.raises(ValueError, match="No train function registered"):
        ask("train")
    with pytest.raises(ValueError, match="Invalid message type"):
        ask("fit")
    with pytest.raises(ValueError, match="already registered"):
        app.query("stats")(stats)


def test_client_fn_form_runs_a_numpy_client() -> None:
    class Doubler(fl.client.NumPyClient):
        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            return [p * 2 for p in parameters], 3, {"seen": float(config["server-round"])}

    app = ClientApp(client_fn=lambda context: Doubler().to_client())
    with pytest.raises(ValueError, match="not both"):
        app.train()
    message = _train_message([np.ones(2)], **{"server-round": 4})
    reply = app(message, _context())
    assert np.array_equal(reply.content["arrays"]["0"].numpy(), [2.0, 2.0])
    assert dict(reply.content["metrics"]) == {"seen": 4.0, "num-examples": 3}


@pytest.mark.parametrize("mod", [fixedclipping_mod, adaptiveclipping_mod])
def test_clipping_mods_clip_the_update_to_the_norm(mod: object) -> None:
    app = ClientApp(mods=[mod])  # type: ignore[list-item]

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        received = msg.content["arrays"].to_numpy_ndarrays()
        return _reply(msg, [received[0] + np.array([3.0, 4.0])], **{"num-examples": 1})

    start = np.array([1.0, 1.0])
    reply = app(_train_message([start], clipping_norm=1.0), _context())
    sent = reply.content["arrays"]["0"].numpy()
    # The update (3, 4) has norm 5: scaled to norm 1 it is (0.6, 0.8).
    assert np.allclose(sent - start, [0.6, 0.8])
    if mod is adaptiveclipping_mod:
        assert reply.content["metrics"]["norm_bit"] == 1
    missing = app(_train_message([start]), _context())
    assert missing.has_error() and "clipping_norm" in (missing.error.reason or "")


@pytest.fixture()
def grid() -> Iterator[ProxyGrid]:
    """Three in-process nodes: 0 and 1 train honestly, 2 raises or sends NaN on request."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        p = int(context.node_config["partition-id"])
        arrays = msg.content["arrays"].to_numpy_ndarrays()
        if p == 2 and msg.content["config"].get("fail") == "raise":
            raise RuntimeError("disk full")
        if p == 2 and msg.content["config"].get("fail") == "shape":
            return _reply(msg, [np.zeros(3, dtype=arrays[0].dtype)], **{"num-examples": 1})
        if p == 2 and msg.content["config"].get("fail") == "nan":
            return _reply(msg, [a * np.nan for a in arrays], **{"num-examples": 1})
        return _reply(msg, [a + p for a in arrays], **{"num-examples": p + 1, "p": float(p)})

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        return Message(RecordDict({"m": MetricRecord({"hist": [1, 2, 3]}),
                                   "state": ConfigRecord({"name": b"node"})}), reply_to=msg)

    manager = SimpleClientManager()
    for p in range(3):
        client = ClientAppClient(app, node_context(p + 1, {"partition-id": p,
                                                           "num-partitions": 3}))
        manager.register(InProcessClientProxy(str(p), client))
    grid = ProxyGrid(manager)
    yield grid
    grid.close()


def test_grid_lists_nodes_and_carries_train_messages(grid: ProxyGrid) -> None:
    nodes = grid.get_node_ids()
    assert nodes == [1, 2, 3]
    content = RecordDict({"arrays": ArrayRecord({"w": ArrayRecord([np.zeros(2)])["0"]}),
                          "config": ConfigRecord({"fail": "no"})})
    replies = grid.send_and_receive([Message(content, n, "train") for n in nodes], timeout=30)
    by_node = {r.metadata.src_node_id: r for r in replies}
    assert set(by_node) == set(nodes)
    assert np.array_equal(by_node[3].content["arrays"]["w"].numpy(), [2.0, 2.0])
    assert by_node[2].content["metrics"]["num-examples"] == 2


@pytest.mark.parametrize(("fail", "reason"), [("raise", "disk full"), ("nan", "NaN")])
def test_a_failing_node_gets_an_error_reply_and_the_others_are_served(
        grid: ProxyGrid, fail: str, reason: str) -> None:
    content = RecordDict({"arrays": ArrayRecord([np.zeros(2)]),
                          "config": ConfigRecord({"fail": fail})})
    replies = grid.send_and_receive([Message(content, n, "train") for n in (1, 2, 3)],
                                    timeout=30)
    errors = [r for r in replies if r.has_error()]
    assert len(replies) == 3 and len(errors) == 1
    assert errors[0].metadata.src_node_id == 3 and reason in (errors[0].error.reason or "")


def test_unknown_nodes_and_query_messages(grid: ProxyGrid) -> None:
    [missing] = grid.send_and_receive([Message(RecordDict(), 99, "train")], timeout=5)
    assert missing.has_error() and "not connected" in (missing.error.reason or "")
    ids = list(grid.push_messages([Message(RecordDict(), 1, "query")]))
    replies: list[Message] = []
    deadline = time.monotonic() + 30
    while not replies and time.monotonic() < deadline:  # pull until the reply is in
        replies = list(grid.pull_messages(ids))
        time.sleep(0.01)
    assert replies, "no reply to the pushed query within 30 s"
    assert list(grid.pull_messages(ids)) == []  # each reply is pulled once
    assert replies[0].content["m"]["hist"] == [1, 2, 3]
    assert replies[0].content["state"]["name"] == b"node"


def test_fedavg_start_on_the_grid_weighs_by_num_examples(grid: ProxyGrid) -> None:
    result = FedAvg(min_available_nodes=3, fraction_evaluate=0.0).start(
        grid=grid, initial_arrays=ArrayRecord([np.zeros(2, np.float32)]), num_rounds=2,
        train_config=ConfigRecord({"fail": "no"}))
    # Each round adds sum_p (p+1) p / sum_p (p+1) = 8/6 to every weight.
    assert np.allclose(result.arrays["0"].numpy(), 2 * 8 / 6)
    assert np.isclose(result.train_metrics_clientapp[2]["p"], 8 / 6)
    assert result.evaluate_metrics_clientapp == {}


def test_start_tells_the_grid_each_rounds_result(grid: ProxyGrid) -> None:
    seen: list[tuple[int, float, list[int]]] = []

    def on_round_end(server_round: int, result: Result, strategy: Strategy) -> None:
        assert isinstance(strategy, FedAvg)
        seen.append((server_round, float(result.arrays["0"].numpy()[0]),
                     sorted(result.evaluate_metrics_serverapp)))

    grid.on_round_end = on_round_end  # type: ignore[method-assign]
    result = FedAvg(min_available_nodes=3, fraction_evaluate=0.0).start(
        grid=grid, initial_arrays=ArrayRecord([np.zeros(2, np.float32)]), num_rounds=2,
        train_config=ConfigRecord({"fail": "no"}),
        evaluate_fn=lambda r, arrays: MetricRecord({"w": float(arrays["0"].numpy()[0])}))
    # Round 0 after the initial evaluation, then each round with the arrays it aggregated.
    assert [r for r, _, _ in seen] == [0, 1, 2]
    assert [w for _, w, _ in seen] == pytest.approx([0.0, 8 / 6, 16 / 6])
    assert [rounds for _, _, rounds in seen] == [[0], [0, 1], [0, 1, 2]]
    assert result.evaluate_metrics_serverapp[2]["w"] == pytest.approx(16 / 6)


def test_server_fn_form_runs_a_legacy_strategy_on_the_same_nodes(grid: ProxyGrid) -> None:
    strategy = fl.server.strategy.FedAvg(
        min_available_clients=3, fraction_evaluate=0.0,
        initial_parameters=fl.common.ndarrays_to_parameters([np.zeros(2)]),
        on_fit_config_fn=lambda r: {"fail": "no"},
        fit_metrics_aggregation_fn=lambda results: {
            "p": sum(n * m["p"] for n, m in results) / sum(n for n, _ in results)})
    app = ServerApp(server_fn=lambda context: ServerAppComponents(
        strategy=strategy, config=fl.server.ServerConfig(num_rounds=1)))
    history = run_server_app(app, grid.client_manager, node_context(0, {}))
    assert history is not None
    # The legacy loop weighed the nodes' metrics by their example counts: 8/6.
    assert np.isclose(history.metrics_distributed_fit["p"][0][1], 8 / 6)
    with pytest.raises(ValueError, match="not both"):
        app.main()


def test_an_error_reply_from_a_client_app_reaches_the_server(grid: ProxyGrid) -> None:
    app = ClientApp()

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return Message(Error(code=7, reason="no data"), reply_to=msg)

    with pytest.raises(RuntimeError, match="error 7: no data"):
        ClientAppClient(app, _context()).evaluate(
            fl.common.EvaluateIns(fl.common.ndarrays_to_parameters([]), {}))


class _SeeingEveryReply(FedAvg):
    """A FedAvg subclass that replaces aggregate_train: it must get every reply at once."""

    def __init__(self) -> None:
        super().__init__(min_available_nodes=3, fraction_evaluate=0.0)
        self.seen: list[int] = []

    def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
        replies = list(replies)
        self.seen.append(sum(1 for r in replies if r.has_content()))
        return super().aggregate_train(server_round, replies)


def test_streaming_fold_and_aggregate_train_give_the_same_model(grid: ProxyGrid) -> None:
    initial = ArrayRecord([np.linspace(0, 1, 5, dtype=np.float32),
                           np.ones((2, 2), dtype=np.float64)])
    config = ConfigRecord({"fail": "no"})
    streamed = FedAvg(min_available_nodes=3, fraction_evaluate=0.0).start(
        grid=grid, initial_arrays=initial, num_rounds=2, train_config=config)
    whole = _SeeingEveryReply()
    at_once = whole.start(grid=grid, initial_arrays=initial, num_rounds=2, train_config=config)
    assert whole.seen == [3, 3]
    for key in ("0", "1"):
        assert streamed.arrays[key].numpy().dtype == at_once.arrays[key].numpy().dtype
        assert np.allclose(streamed.arrays[key].numpy(), at_once.arrays[key].numpy(),
                           rtol=1e-6)
    assert dict(streamed.train_metrics_clientapp[2]) == pytest.approx(
        dict(at_once.train_metrics_clientapp[2]))


def test_two_messages_for_one_node_get_two_replies(grid: ProxyGrid) -> None:
    contents = [RecordDict({"arrays": ArrayRecord([np.full(1, float(v))]),
                            "config": ConfigRecord({"fail": "no"})}) for v in (10, 20)]
    replies = grid.send_and_receive([Message(c, 2, "train") for c in contents], timeout=30)
    values = sorted(float(r.content["arrays"]["0"].numpy()[0]) for r in replies)
    assert values == [11.0, 21.0]  # node 2 is partition 1: it adds 1


def test_client_side_clipping_wrapper_and_mod_clip_every_update() -> None:
    from fedsilo.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping

    app = ClientApp(mods=[fixedclipping_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        received = msg.content["arrays"].to_numpy_ndarrays()
        step = np.array([3.0, 4.0]) * (1 + int(context.node_config["partition-id"]))
        return _reply(msg, [received[0] + step], **{"num-examples": 1})

    grid = in_process_grid(app, 2)
    try:
        noiseless = DifferentialPrivacyClientSideFixedClipping(
            FedAvg(fraction_evaluate=0.0), noise_multiplier=0.0, clipping_norm=1.0,
            num_sampled_clients=2)
        result = noiseless.start(grid=grid, initial_arrays=ArrayRecord([np.zeros(2)]),
                                 num_rounds=2)
        # Each round every update, (3, 4) or (6, 8), is clipped to (0.6, 0.8).
        assert np.allclose(result.arrays["0"].numpy(), [1.2, 1.6])
        noisy = DifferentialPrivacyClientSideFixedClipping(
            FedAvg(fraction_evaluate=0.0), noise_multiplier=1.0, clipping_norm=1.0,
            num_sampled_clients=2, seed=3)
        noised = noisy.start(grid=grid, initial_arrays=ArrayRecord([np.zeros(2)]),
                             num_rounds=1).arrays["0"].numpy()
        expected = [0.6, 0.8] + np.random.default_rng(3).normal(0.0, 0.5, size=2)
        assert np.allclose(noised, expected)
    finally:
        grid.close()


def test_lifespans_wrap_each_message_and_the_server_app(grid: ProxyGrid) -> None:
    events: list[str] = []
    app = ClientApp()

    @app.lifespan()
    def around(context: Context) -> Iterator[None]:
        events.append("setup")
        yield
        events.append("cleanup")

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        events.append("query")
        return Message(RecordDict(), reply_to=msg)

    app(Message(RecordDict(), 1, "query"), _context())
    assert events == ["setup", "query", "cleanup"]

    server = ServerApp()

    @server.lifespan()
    def twice(context: Context) -> Iterator[None]:
        yield
        yield

    @server.main()
    def main(grid: ProxyGrid, context: Context) -> None:
        events.append("main")

    with pytest.raises(RuntimeError, match="only yield once"):
        server(grid, _context())
    assert events[-1] == "main"


@pytest.mark.parametrize("strategy", [FedAvg, _SeeingEveryReply], ids=["streaming", "at-once"])
def test_a_reply_shaped_unlike_the_others_is_left_out(grid: ProxyGrid, strategy: type) -> None:
    chosen = strategy() if strategy is _SeeingEveryReply else strategy(
        min_available_nodes=3, fraction_evaluate=0.0)
    result = chosen.start(grid=grid, initial_arrays=ArrayRecord([np.zeros(2, np.float32)]),
                          num_rounds=1, train_config=ConfigRecord({"fail": "shape"}))
    # Node 3 (partition 2) sent three numbers: only partitions 0 and 1 count, 1 * 2 / 3.
    assert np.allclose(result.arrays["0"].numpy(), 2 / 3)


def test_a_legacy_client_is_told_apart_and_refused_what_it_cannot_read(grid: ProxyGrid) -> None:
    class Legacy(fl.client.NumPyClient):
        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            return [p + 1 for p in parameters], 1, {}

    grid.client_manager.register(InProcessClientProxy("legacy", Legacy().to_client()))
    legacy_node = grid.get_node_ids()[-1]
    queries = grid.send_and_receive([Message(RecordDict(), node, "query")
                                     for node in (1, legacy_node)], timeout=30)
    by_node = {r.metadata.src_node_id: r for r in queries}
    assert by_node[1].has_content()
    refused = by_node[legacy_node]
    assert refused.has_error() and "is a legacy client" in (refused.error.reason or "")
    # What a legacy client can read still reaches it.
    content = RecordDict({"arrays": ArrayRecord([np.zeros(2)]), "config": ConfigRecord()})
    [trained] = grid.send_and_receive([Message(content, legacy_node, "train")], timeout=30)
    assert np.array_equal(trained.content["arrays"]["0"].numpy(), [1.0, 1.0])

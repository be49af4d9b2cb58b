"""The round loop waits for proxies that ``submit`` from its own thread, and calls the others
from worker threads, in one round."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

import fedsilo as fl
from fedsilo.common import (
    ClientDisconnected,
    ClientTimeout,
    FitIns,
    FitRes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from fedsilo.server import Server, SimpleClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.simulation import InProcessClientProxy


class Scaled(fl.client.NumPyClient):
    def __init__(self, factor: float, examples: int) -> None:
        self.factor, self.examples = factor, examples

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return [p + self.factor for p in parameters], self.examples, {}


class Pending:
    """What ``Submitting.submit`` returns: the reply once the answering thread set it."""

    def __init__(self) -> None:
        self.reply: FitRes | BaseException | None = None
        self.cancelled = False

    def result(self) -> FitRes:
        assert self.reply is not None, "result() before notify"
        if isinstance(self.reply, BaseException):
            raise self.reply
        return self.reply

    def cancel(self) -> None:
        self.cancelled = True


class Submitting(InProcessClientProxy):
    """Answers ``submit`` from a thread of its own after ``delay`` seconds (never, when None),
    notifying ``notifications`` times; its blocking calls must not be used."""

    def __init__(self, cid: str, client: fl.client.NumPyClient, delay: float | None,
                 notifications: int = 1, fail: BaseException | None = None) -> None:
        super().__init__(cid, client.to_client())
        self.delay, self.notifications, self.fail = delay, notifications, fail
        self.handles: list[Pending] = []

    def submit(self, ins: Any, notify: Callable[[], None]) -> Pending:
        if self.fail is not None:
            raise self.fail
        handle = Pending()
        self.handles.append(handle)
        if self.delay is not None:
            def answer() -> None:
                handle.reply = InProcessClientProxy.fit(self, ins, None)
                for _ in range(self.notifications):
                    notify()

            threading.Timer(self.delay, answer).start()
        return handle

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None = None) -> FitRes:
        raise AssertionError("the round loop called a submitting proxy's blocking fit")


def start() -> fl.common.Parameters:
    return ndarrays_to_parameters([np.zeros(5, np.float32)])


class RecordsSampling(fl.server.strategy.FedAvg):
    def configure_fit(self, *args: Any, **kwargs: Any) -> Any:
        instructions = super().configure_fit(*args, **kwargs)
        self.sampled = [client.cid for client, _ in instructions]
        return instructions


def round_with(*proxies: ClientProxy, timeout: float | None = 10) -> tuple[Server, Any]:
    manager = SimpleClientManager(seed=0)
    for proxy in proxies:
        manager.register(proxy)
    strategy = RecordsSampling(
        min_fit_clients=len(proxies), min_available_clients=len(proxies),
        fraction_evaluate=0.0, initial_parameters=start())
    server = Server(client_manager=manager, strategy=strategy)
    server.parameters = start()
    fitted = server.fit_round(1, timeout=timeout)
    assert fitted is not None
    return server, fitted


def test_submitted_and_threaded_clients_share_a_round_and_results_keep_the_sampled_order() \
        -> None:
    # The first sampled client answers last, the threaded one in between.
    proxies = [Submitting("a", Scaled(1.0, 1), delay=0.3),
               InProcessClientProxy("b", Scaled(2.0, 3).to_client()),
               Submitting("c", Scaled(4.0, 4), delay=0.0, notifications=3)]
    server, (parameters, _, (results, failures)) = round_with(*proxies)
    assert not failures
    assert [c.cid for c, _ in results] == server.strategy.sampled  # type: ignore[attr-defined]
    assert sorted(server.strategy.sampled) == ["a", "b", "c"]  # type: ignore[attr-defined]
    # FedAvg's example-weighted mean of the three updates, from the formula.
    expected = (1.0 * 1 + 2.0 * 3 + 4.0 * 4) / (1 + 3 + 4)
    np.testing.assert_allclose(parameters_to_ndarrays(parameters)[0], expected, rtol=1e-6)
    assert server._workers is not None  # the in-process client needed a worker thread


def test_a_round_of_submitting_clients_starts_no_worker_thread() -> None:
    server, (_, _, (results, failures)) = round_with(
        Submitting("a", Scaled(1.0, 1), delay=0.0), Submitting("b", Scaled(1.0, 1), delay=0.1))
    assert len(results) == 2 and not failures
    assert server._workers is None


def test_a_submitted_instruction_past_the_timeout_is_cancelled_and_a_timeout() -> None:
    silent = Submitting("silent", Scaled(1.0, 1), delay=None)
    _, (_, _, (results, failures)) = round_with(
        silent, Submitting("quick", Scaled(1.0, 2), delay=0.0),
        InProcessClientProxy("threaded", Scaled(1.0, 2).to_client()), timeout=0.3)
    assert sorted(c.cid for c, _ in results) == ["quick", "threaded"]
    assert len(failures) == 1 and isinstance(failures[0], ClientTimeout)
    assert failures[0].cid == "silent" and "no reply within 0.3 s" in str(failures[0])
    assert silent.handles[0].cancelled


def test_failures_to_send_and_failed_replies_are_the_clients_failures() -> None:
    broken = Submitting("broken", Scaled(1.0, 1), delay=0.0, fail=RuntimeError("bug"))
    gone = Submitting("gone", Scaled(1.0, 1), delay=0.0,
                      fail=ClientDisconnected("gone", "the client disconnected"))
    _, (_, _, (results, failures)) = round_with(
        broken, gone, Submitting("fine", Scaled(1.0, 1), delay=0.0))
    assert [c.cid for c, _ in results] == ["fine"]
    by_cid = {f.cid: f for f in failures}  # type: ignore[attr-defined]
    assert set(by_cid) == {"broken", "gone"}
    assert "RuntimeError: bug" in str(by_cid["broken"])
    assert by_cid["gone"] is gone.fail


class Duck:
    """A proxy that does not derive from ClientProxy and has no ``submit``: called from a
    worker thread, as every proxy was before ``submit`` existed."""

    def __init__(self, cid: str, client: fl.client.NumPyClient) -> None:
        self.cid, self.properties = cid, {}
        self._inner = InProcessClientProxy(cid, client.to_client())

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None = None) -> FitRes:
        return self._inner.fit(ins, timeout, group_id)

    def release_reply(self) -> None:
        pass


def test_a_proxy_without_submit_is_called_from_a_worker_thread() -> None:
    server, (parameters, _, (results, failures)) = round_with(
        Duck("duck", Scaled(3.0, 1)),  # type: ignore[arg-type]
        Submitting("a", Scaled(1.0, 1), delay=0.0))
    assert not failures and len(results) == 2
    np.testing.assert_allclose(parameters_to_ndarrays(parameters)[0], 2.0, rtol=1e-6)
    assert server._workers is not None

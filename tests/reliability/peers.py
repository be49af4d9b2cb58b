"""Honest clients, raw gRPC peers and a server handle for the transport and hostile-input tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np

import fedsilo as fl
from fedsilo.common import (
    Code,
    DisconnectRes,
    FitRes,
    ReconnectIns,
    Status,
    ndarrays_to_parameters,
    serde,
)
from fedsilo.server.client_manager import SimpleClientManager
from fedsilo.server.client_proxy import ClientProxy

JOIN = "/flwr.proto.FlowerService/Join"
SHAPES = [(4, 3), (3,)]


def initial() -> list[np.ndarray]:
    return [np.zeros(s, dtype=np.float64) for s in SHAPES]


class Honest(fl.client.NumPyClient):
    """Adds ``offset * (layer + 1)`` to every layer; the values stay exact in float64."""

    def __init__(self, offset: float, n: int) -> None:
        self.offset, self.n = offset, n
        self.fits = 0

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return initial()

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        self.fits += 1
        return [p + self.offset * (i + 1) for i, p in enumerate(parameters)], self.n, {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return float(sum(p.sum() for p in parameters)), self.n, {}


def expected_fedavg(clients: list[Honest], rounds: int) -> list[np.ndarray]:
    """FedAvg of ``clients`` over ``rounds``, computed from its formula."""
    params = initial()
    total = sum(c.n for c in clients)
    for _ in range(rounds):
        params = [np.sum([c.n * (p + c.offset * (i + 1)) for c in clients], axis=0) / total
                  for i, p in enumerate(params)]
    return params


class RecordingStrategy(fl.server.strategy.FedAvg):
    """FedAvg that keeps each round's failures and the parameters it produced."""

    def __init__(self, n: int, **kwargs: Any) -> None:
        kwargs.setdefault("initial_parameters", ndarrays_to_parameters(initial()))
        kwargs.setdefault("fraction_evaluate", 0.0)
        super().__init__(min_fit_clients=n, min_available_clients=n, min_evaluate_clients=n,
                         **kwargs)
        self.failures: dict[int, list[BaseException]] = {}
        self.results: dict[int, int] = {}
        self.aggregated: dict[int, list[np.ndarray]] = {}
        self.evaluate_failures: dict[int, list[BaseException]] = {}
        self.evaluate_results: dict[int, int] = {}

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
        self.evaluate_failures[server_round] = list(failures)
        self.evaluate_results[server_round] = len(results)
        return super().aggregate_evaluate(server_round, results, failures)

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self.failures[server_round] = list(failures)
        self.results[server_round] = len(results)
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        if parameters is not None:
            self.aggregated[server_round] = [
                a.copy() for a in fl.common.parameters_to_ndarrays(parameters)]
        return parameters, metrics


class FirstRoundWaitsForAll(RecordingStrategy):
    """Round 1 waits for ``first`` clients (hostile peers too), later rounds for ``later``."""

    def __init__(self, first: int, later: int, **kwargs: Any) -> None:
        super().__init__(later, **kwargs)
        self.first, self.later = first, later

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        wanted = self.first if server_round == 1 else self.later
        self.min_available_clients = self.min_fit_clients = wanted
        return super().configure_fit(server_round, parameters, client_manager)


class RecordingClientManager(SimpleClientManager):
    """Remembers every client that was ever registered."""

    def __init__(self) -> None:
        super().__init__()
        self.registered: list[str] = []

    def register(self, client: ClientProxy) -> bool:
        self.registered.append(client.cid)
        return super().register(client)


class RawPeer:
    """A gRPC peer that speaks bytes on ``Join``: it sends whatever the test puts in."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None,
                 metadata: tuple[tuple[str, str], ...] = (), wait_for_ready: bool = True) -> None:
        self.channel = (grpc.secure_channel(address, credentials) if credentials is not None
                        else grpc.insecure_channel(address))
        self._outgoing: list[bytes | None] = []
        self._cv = threading.Condition()
        join = self.channel.stream_stream(JOIN, request_serializer=None,
                                          response_deserializer=None)
        self.responses = join(self._requests(), metadata=metadata or None,
                              wait_for_ready=wait_for_ready)
        self.ended: BaseException | None = None  # how serve_raw's stream ended

    def _requests(self) -> Iterator[bytes]:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._outgoing))
                item = self._outgoing.pop(0)
            if item is None:
                return
            yield item

    def send(self, data: bytes) -> None:
        with self._cv:
            self._outgoing.append(data)
            self._cv.notify_all()

    def send_end(self) -> None:
        """Close this side of the stream (the call stays open for the server's messages)."""
        with self._cv:
            self._outgoing.append(None)
            self._cv.notify_all()

    def receive(self) -> bytes:
        return next(self.responses)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.send_end()
        self.responses.cancel()
        self.channel.close()


class ServerThread:
    """``start_server`` in a thread; ``join`` returns its History or raises its error."""

    def __init__(self, **kwargs: Any) -> None:
        self.history: fl.server.History | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, **kwargs: Any) -> None:
        try:
            self.history = fl.server.start_server(**kwargs)
        except BaseException as exc:  # surfaced by join
            self.error = exc

    def join(self, timeout: float) -> fl.server.History:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"start_server still runs after {timeout} s"
        if self.error is not None:
            raise self.error
        assert self.history is not None
        return self.history


Answer = Callable[[Any], list[bytes]]


def serve_raw(peer: RawPeer, answer: Answer) -> threading.Thread:
    """Answer each instruction with ``answer(instruction)``'s byte strings until let go."""

    def run() -> None:
        while True:
            try:
                ins = serde.server_message_from_bytes(peer.receive())
            except (StopIteration, grpc.RpcError) as exc:
                peer.ended = exc
                return
            if isinstance(ins, ReconnectIns):
                peer.send(serde.client_message_to_bytes(DisconnectRes("ACK")))
                return
            for data in answer(ins):
                peer.send(data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def fit_res_bytes(arrays: list[np.ndarray], num_examples: int) -> bytes:
    return serde.client_message_to_bytes(
        FitRes(Status(Code.OK, "Success"), ndarrays_to_parameters(arrays), num_examples, {}))


def start_client_thread(address: str, client: fl.client.NumPyClient,
                        errors: list[BaseException], **kwargs: Any) -> threading.Thread:
    """``start_numpy_client`` in a daemon thread; what it raises goes to ``errors``."""

    def run() -> None:
        try:
            fl.client.start_numpy_client(server_address=address, client=client, **kwargs)
        except BaseException as exc:  # the caller checks errors
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def start_numpy_clients(address: str, clients: list[tuple[fl.client.NumPyClient, int | None]],
                        errors: list[BaseException]) -> list[threading.Thread]:
    """Start each (client, message limit) in a thread; what a client raises goes to errors."""
    return [start_client_thread(address, client, errors, max_wait_time=30,
                                **({} if limit is None else {"grpc_max_message_length": limit}))
            for client, limit in clients]

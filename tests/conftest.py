"""Shared fixtures: a free port and a federation that runs on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

import fedsilo as fl


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalFederation:
    """Runs ``start_server`` and clients in threads of the test process."""

    port: int = field(default_factory=free_port)
    threads: list[threading.Thread] = field(default_factory=list)
    client_errors: list[BaseException] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_client(self, client: fl.client.NumPyClient | fl.client.Client) -> None:
        def run() -> None:
            try:
                if isinstance(client, fl.client.NumPyClient):
                    fl.client.start_numpy_client(server_address=self.address, client=client,
                                                 max_wait_time=30)
                else:
                    fl.client.start_client(server_address=self.address, client=client,
                                           max_wait_time=30)
            except BaseException as exc:  # surfaced by join_clients
                self.client_errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def run_server(self, strategy: fl.server.strategy.Strategy, num_rounds: int,
                   round_timeout: float | None = 30.0, **kwargs: object) -> fl.server.History:
        return fl.server.start_server(
            server_address=self.address,
            config=fl.server.ServerConfig(num_rounds=num_rounds, round_timeout=round_timeout),
            strategy=strategy,
            **kwargs,  # type: ignore[arg-type]
        )

    def join_clients(self, timeout: float = 20.0) -> None:
        for thread in self.threads:
            thread.join(timeout)
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, f"{len(alive)} client threads still running"
        assert not self.client_errors, f"clients raised: {self.client_errors}"


@pytest.fixture
def federation() -> Iterator[LocalFederation]:
    yield LocalFederation()


Factory = Callable[..., object]

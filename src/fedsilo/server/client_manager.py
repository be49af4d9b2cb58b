"""Keeps track of connected clients and samples them for rounds."""

from __future__ import annotations

import logging
import random
import threading
from abc import ABC, abstractmethod
from typing import Any

from fedsilo.server.client_proxy import ClientProxy

log = logging.getLogger("fedsilo.server")

__all__ = ["ClientManager", "Criterion", "SimpleClientManager"]


class Criterion(ABC):
    """Decides whether a client may be sampled."""

    @abstractmethod
    def select(self, client: ClientProxy) -> bool: ...


class ClientManager(ABC):
    """The registry of available clients.

    The gRPC server calls ``register`` and ``unregister`` on the event loop that serves
    every client's stream: they must return quickly and never wait for other clients.
    """

    @abstractmethod
    def num_available(self) -> int: ...

    @abstractmethod
    def register(self, client: ClientProxy) -> bool: ...

    @abstractmethod
    def unregister(self, client: ClientProxy) -> None: ...

    @abstractmethod
    def all(self) -> dict[str, ClientProxy]: ...

    @abstractmethod
    def wait_for(self, num_clients: int, timeout: float) -> bool: ...

    @abstractmethod
    def sample(
        self,
        num_clients: int,
        min_num_clients: int | None = None,
        criterion: Criterion | None = None,
    ) -> list[ClientProxy]: ...

    def state_dict(self) -> dict[str, Any]:
        """JSON state a checkpoint needs so a resumed run samples as an uninterrupted one."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what ``state_dict`` returned (managers without state ignore it)."""


class SimpleClientManager(ClientManager):
    """Thread-safe registry; sampling is uniform without replacement.

    ``seed`` makes sampling reproducible; ``wait_timeout`` bounds how long
    ``sample`` waits for ``min_num_clients`` to be connected.
    """

    def __init__(self, *, seed: int | None = None, wait_timeout: float = 86400.0) -> None:
        self.seed = seed
        self.wait_timeout = wait_timeout
        self._clients: dict[str, ClientProxy] = {}
        self._cv = threading.Condition()
        self._random = random.Random(seed)
        self._waits_cancelled = False

    def __len__(self) -> int:
        return self.num_available()

    def num_available(self) -> int:
        with self._cv:
            return len(self._clients)

    def register(self, client: ClientProxy) -> bool:
        with self._cv:
            if client.cid in self._clients:
                return False
            self._clients[client.cid] = client
            self._cv.notify_all()
        log.debug("client %s registered", client.cid)
        return True

    def unregister(self, client: ClientProxy) -> None:
        with self._cv:
            if self._clients.get(client.cid) is client:
                del self._clients[client.cid]
                self._cv.notify_all()

    def all(self) -> dict[str, ClientProxy]:
        with self._cv:
            return dict(self._clients)

    def wait_for(self, num_clients: int, timeout: float = 86400.0) -> bool:
        """Block until ``num_clients`` are connected; False if ``timeout`` passes first, or
        once :meth:`cancel_waits` was called."""
        with self._cv:
            self._cv.wait_for(lambda: len(self._clients) >= num_clients or self._waits_cancelled,
                              timeout=timeout)
            return len(self._clients) >= num_clients and not self._waits_cancelled

    def cancel_waits(self) -> None:
        """End every wait for clients now and refuse later ones (a run being stopped)."""
        with self._cv:
            self._waits_cancelled = True
            self._cv.notify_all()

    def sample(
        self,
        num_clients: int,
        min_num_clients: int | None = None,
        criterion: Criterion | None = None,
    ) -> list[ClientProxy]:
        """Up to ``num_clients`` clients, after waiting for ``min_num_clients`` of them."""
        needed = num_clients if min_num_clients is None else min_num_clients
        if not self.wait_for(needed, self.wait_timeout):
            if self._waits_cancelled:
                return []
            log.warning("sampling: waited %.0f s for %d clients, only %d connected",
                        self.wait_timeout, needed, self.num_available())
            return []
        with self._cv:
            # Sorted ids make a seeded sample independent of connection order.
            candidates = [self._clients[cid] for cid in sorted(self._clients)]
        if criterion is not None:
            candidates = [c for c in candidates if criterion.select(c)]
        if num_clients > len(candidates):
            log.info("sampling: %d clients requested, %d eligible", num_clients, len(candidates))
            return []
        return self._random.sample(candidates, num_clients)

    def state_dict(self) -> dict[str, Any]:
        """The sampling generator's position: its Mersenne Twister words as one hex string."""
        version, internal, gauss_next = self._random.getstate()
        words = "".join(f"{word:08x}" for word in internal)
        return {"random_state": {"version": version, "words": words, "gauss_next": gauss_next}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "random_state" not in state:
            return  # written by a manager without a generator: keep this one's seed
        saved = state["random_state"]
        hexed = saved["words"]
        words = tuple(int(hexed[i:i + 8], 16) for i in range(0, len(hexed), 8))
        self._random.setstate((saved["version"], words, saved["gauss_next"]))

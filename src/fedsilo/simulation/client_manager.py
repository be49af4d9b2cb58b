"""``VirtualClientManager``: a registry of client ids, not of client objects.

A simulated federation may register a million clients; holding a proxy (or a
thread, or an actor) per client would cost memory for clients that mostly sit
idle. This manager keeps the ids only (for ``num_clients`` clients named
``"0"`` to ``str(n - 1)``, not even a list: a range) and makes a lightweight
proxy for a client when it is sampled; the round drops it when it ends.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import overload

from fedsilo.server.client_manager import ClientManager, Criterion
from fedsilo.server.client_proxy import ClientProxy

log = logging.getLogger("fedsilo.simulation")

__all__ = ["ClientIds", "ProxyFactory", "VirtualClientManager"]

ProxyFactory = Callable[[str], ClientProxy]


class ClientIds(Sequence[str]):
    """The ids ``"0"`` .. ``str(n - 1)`` as a sequence that stores only ``n``."""

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"the number of clients must be non-negative, got {n}")
        self.n = n

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [str(i) for i in range(self.n)[index]]
        return str(range(self.n)[index])

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str) or not value.isdigit() or str(int(value)) != value:
            return False
        return int(value) < self.n

    def __iter__(self) -> Iterator[str]:
        return (str(i) for i in range(self.n))


class VirtualClientManager(ClientManager):
    """Samples client ids uniformly without replacement; proxies exist only once sampled.

    ``seed`` makes sampling reproducible. Ids given as a list are kept sorted, so a seeded
    sample does not depend on the order they were listed in (as with
    ``SimpleClientManager``); ids from ``num_clients`` keep their numeric order.
    ``start_simulation`` attaches the ids and the proxy factory; a manager built by the
    caller starts empty.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = seed
        self._random = random.Random(seed)
        self._ids: Sequence[str] = ClientIds(0)
        self._factory: ProxyFactory | None = None
        self._lock = threading.Lock()

    def attach(self, ids: Sequence[str], factory: ProxyFactory) -> None:
        """Register the id space and the function that makes a proxy for a sampled id."""
        if not isinstance(ids, ClientIds):
            ids = sorted(ids)
            for before, after in zip(ids, ids[1:], strict=False):
                if before == after:
                    raise ValueError(f"client id {before!r} is listed twice; ids must be unique")
        with self._lock:
            self._ids = ids
            self._factory = factory

    def __len__(self) -> int:
        return self.num_available()

    def num_available(self) -> int:
        return len(self._ids)

    def register(self, client: ClientProxy) -> bool:
        raise TypeError(
            "VirtualClientManager samples simulated clients by id and holds no proxies; "
            "register connected clients with SimpleClientManager instead")

    def unregister(self, client: ClientProxy) -> None:
        raise TypeError("VirtualClientManager holds no proxies to unregister")

    def all(self) -> dict[str, ClientProxy]:
        """Every client as a proxy: builds one object per id, so avoid it for large id spaces."""
        return {cid: self._proxy(cid) for cid in self._ids}

    def wait_for(self, num_clients: int, timeout: float = 86400.0) -> bool:
        # Virtual clients are all there from the start: nothing to wait for.
        return len(self._ids) >= num_clients

    def sample(
        self,
        num_clients: int,
        min_num_clients: int | None = None,
        criterion: Criterion | None = None,
    ) -> list[ClientProxy]:
        """``num_clients`` proxies for ids drawn without replacement (fewer: none at all)."""
        needed = num_clients if min_num_clients is None else min_num_clients
        available = len(self._ids)
        if available < needed or num_clients > available:
            log.info("sampling: %d clients requested, %d registered", num_clients, available)
            return []
        if criterion is None:
            with self._lock:
                indices = self._random.sample(range(available), num_clients)
            return [self._proxy(self._ids[i]) for i in indices]
        # Walk a seeded permutation and keep the first ids the criterion accepts.
        with self._lock:
            order = self._random.sample(range(available), available)
        chosen: list[ClientProxy] = []
        for i in order:
            proxy = self._proxy(self._ids[i])
            if criterion.select(proxy):
                chosen.append(proxy)
                if len(chosen) == num_clients:
                    return chosen
        log.info("sampling: %d clients requested, %d eligible", num_clients, len(chosen))
        return []

    def _proxy(self, cid: str) -> ClientProxy:
        if self._factory is None:
            raise RuntimeError("this VirtualClientManager has no clients yet; "
                               "start_simulation attaches them")
        return self._factory(cid)

"""Clients that keep failing are set aside until they show they are alive again.

A client that times out or fails ``max_failures`` rounds in a row (a stream that joined
and never answers, a crashed site whose connection has not dropped yet) would otherwise be
sampled every round and make every round wait for the whole timeout. Once set aside it is
left out of sampling; at the start of each round it is sent a liveness probe (a
``GetPropertiesIns``, which every Flower client answers, if only with "not implemented"),
and the first answer puts it back. A client that reconnects registers anew, with a clean
record. The probe waits behind whatever the client has not answered yet, so a client that
never answers costs one queued probe, not a round.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from fedsilo.common.exceptions import ClientDisconnected
from fedsilo.common.typing import GetPropertiesIns
from fedsilo.server.client_manager import ClientManager, Criterion
from fedsilo.server.client_proxy import ClientProxy

log = logging.getLogger("fedsilo.server")

__all__ = ["DEFAULT_MAX_FAILURES", "ClientHealth"]

DEFAULT_MAX_FAILURES = 3


class ClientHealth:
    """Counts each client's failed rounds in a row and sets aside those that reach
    ``max_failures`` (0 turns this off)."""

    def __init__(self, max_failures: int = DEFAULT_MAX_FAILURES) -> None:
        if max_failures < 0:
            raise ValueError(f"max_failures must be 0 (off) or more, got {max_failures}")
        self.max_failures = max_failures
        self._lock = threading.Lock()
        self._streaks: dict[str, tuple[int, int]] = {}  # cid -> (rounds in a row, last round)
        self._benched: dict[str, ClientProxy] = {}
        self._probes: dict[str, Any] = {}  # cid -> its probe's pending reply or future
        self._answered: set[str] = set()  # probes whose reply is in (set from any thread)

    @property
    def benched(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._benched)

    def record(self, client: ClientProxy, server_round: int, failure: BaseException | None
               ) -> None:
        """The outcome of one instruction of ``server_round`` (None: it succeeded)."""
        if self.max_failures == 0:
            return
        cid = client.cid
        with self._lock:
            if failure is None:
                self._streaks.pop(cid, None)
                return
            if isinstance(failure, ClientDisconnected):  # gone: a new stream starts afresh
                self._streaks.pop(cid, None)
                return
            count, last = self._streaks.get(cid, (0, 0))
            if last == server_round:
                return  # fit and evaluate of one round are one failed round
            count += 1
            self._streaks[cid] = (count, server_round)
            if count < self.max_failures or cid in self._benched:
                return
            self._benched[cid] = client
        log.debug("client %s failed %d rounds in a row (%s); not sampled until it answers a "
                  "liveness probe", cid, count, failure)

    def sampling_view(self, manager: ClientManager) -> ClientManager:
        """``manager`` as the strategy should see it: without the clients set aside."""
        with self._lock:
            if not self._benched:
                return manager
        return _WithoutBenched(manager, self)

    def probe(self, timeout: float | None,
              pool: Callable[[], concurrent.futures.ThreadPoolExecutor]) -> list[str]:
        """Put back the clients whose probe answered; probe the others that have none out.
        Returns the ids of the clients put back."""
        with self._lock:
            benched = dict(self._benched)
            answered, self._answered = self._answered, set()
        back: list[str] = []
        for cid, client in benched.items():
            handle = self._probes.get(cid)
            if handle is not None and (cid in answered or (
                    isinstance(handle, concurrent.futures.Future) and handle.done())):
                del self._probes[cid]
                try:
                    handle.result()
                except ClientDisconnected:
                    self._forget(cid)
                    continue
                except Exception as exc:  # not a sign of life: probe again
                    log.debug("client %s: liveness probe failed: %s", cid, exc)
                else:
                    self._forget(cid)
                    back.append(cid)
                    continue
            if cid not in self._probes:
                self._probes[cid] = self._send_probe(client, timeout, pool)
        if back:
            log.info("%d client(s) answered the liveness probe and are sampled again",
                     len(back))
        return back

    def _send_probe(self, client: ClientProxy, timeout: float | None,
                    pool: Callable[[], concurrent.futures.ThreadPoolExecutor]) -> Any:
        ins = GetPropertiesIns(config={})
        submit = getattr(client, "submit", None)  # a proxy need not derive from ours
        if submit is not None:
            try:
                handle = submit(ins, functools.partial(self._answer, client.cid))
            except Exception as exc:  # not sent: the client is gone
                failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
                failed.set_exception(exc)
                return failed
            if handle is not None:
                return handle
        # A proxy that cannot submit (in-process, simulated) is called from a worker.
        return pool().submit(client.get_properties, ins, timeout, None)

    def _answer(self, cid: str) -> None:
        with self._lock:
            self._answered.add(cid)

    def _forget(self, cid: str) -> None:
        with self._lock:
            self._benched.pop(cid, None)
            self._streaks.pop(cid, None)


class _NotBenched(Criterion):
    def __init__(self, benched: frozenset[str], criterion: Criterion | None) -> None:
        self._benched = benched
        self._criterion = criterion

    def select(self, client: ClientProxy) -> bool:
        if client.cid in self._benched:
            return False
        return self._criterion is None or self._criterion.select(client)


class _WithoutBenched(ClientManager):
    """A client manager seen without the clients ``health`` set aside."""

    def __init__(self, manager: ClientManager, health: ClientHealth) -> None:
        self._manager = manager
        self._benched = health.benched

    def num_available(self) -> int:
        # Not a walk over all(): a simulation's manager would build a proxy per id. A client
        # set aside that has since gone is forgotten at the next round's probe.
        return max(0, self._manager.num_available() - len(self._benched))

    def register(self, client: ClientProxy) -> bool:
        return self._manager.register(client)

    def unregister(self, client: ClientProxy) -> None:
        self._manager.unregister(client)

    def all(self) -> dict[str, ClientProxy]:
        return {cid: c for cid, c in self._manager.all().items() if cid not in self._benched}

    def wait_for(self, num_clients: int, timeout: float) -> bool:
        return self._manager.wait_for(num_clients + len(self._benched), timeout)

    def sample(self, num_clients: int, min_num_clients: int | None = None,
               criterion: Criterion | None = None) -> list[ClientProxy]:
        return self._manager.sample(num_clients, min_num_clients,
                                    _NotBenched(self._benched, criterion))

    def state_dict(self) -> dict[str, Any]:
        return self._manager.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._manager.load_state_dict(state)

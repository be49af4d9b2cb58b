"""``start_simulation``: a federation of virtual clients on this machine or a Ray cluster.

Called like Flower's ``flwr.simulation.start_simulation``. Clients exist only as
ids until sampled; a sampled client is built by ``client_fn(cid)`` in a worker
(a process of the local pool, or a Ray actor), runs its instruction and is
dropped. The server's round loop is the one deployments use: results stream
into the strategy as clients finish.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from fedsilo.server.client_manager import ClientManager
from fedsilo.server.history import History
from fedsilo.server.server import Server
from fedsilo.server.server_config import ServerConfig
from fedsilo.server.strategy import FedAvg, Strategy
from fedsilo.simulation.client_manager import ClientIds, VirtualClientManager
from fedsilo.simulation.engine import Engine, VirtualClientProxy
from fedsilo.simulation.local import default_num_workers, local_engine
from fedsilo.simulation.runtime import ClientFn

log = logging.getLogger("fedsilo.simulation")

__all__ = ["start_simulation"]

Backend = Literal["local", "ray"]
DEFAULT_CLIENT_RESOURCES = {"num_cpus": 1.0, "num_gpus": 0.0}
PROXY_PER_CLIENT_WARNING = 100_000


def start_simulation(
    *,
    client_fn: ClientFn,
    num_clients: int | None = None,
    clients_ids: Sequence[str] | None = None,
    client_resources: dict[str, float] | None = None,
    server: Server | None = None,
    config: ServerConfig | None = None,
    strategy: Strategy | None = None,
    client_manager: ClientManager | None = None,
    ray_init_args: dict[str, Any] | None = None,
    keep_initialised: bool = False,
    actor_scheduling: str | Any = "DEFAULT",
    backend: Backend = "local",
    num_workers: int | None = None,
    client_state_dir: str | Path | None = None,
    ray_address: str | None = None,
) -> History:
    """Run ``config.num_rounds`` rounds over virtual clients; return the History.

    Flower's arguments keep Flower's meaning: clients are ``num_clients`` ids ``"0"`` ..
    ``str(num_clients - 1)`` or the given ``clients_ids``; ``client_resources``
    (``num_cpus``, ``num_gpus``) is what one running client reserves; ``ray_init_args`` go to
    ``ray.init`` (``{"address": "auto"}`` or ``"ray://host:10001"`` joins a cluster) and
    ``keep_initialised`` leaves Ray running afterwards (an already running Ray is reused and
    left running). ``actor_scheduling`` is the Ray actors' scheduling strategy.

    fedsilo adds: ``backend`` (``"local"``, a process pool on this machine, or ``"ray"``);
    ``num_workers``, the most clients running at once (default: as many as
    ``client_resources`` fit on the machine or cluster); ``client_state_dir``, where clients
    that implement :class:`~fedsilo.simulation.StatefulClient` keep their state between the
    rounds they are sampled in; ``ray_address`` attaches the Ray backend to a running
    cluster (``"host:port"`` of its head, ``"auto"``, or ``"ray://host:10001"``; the same
    as ``ray_init_args={"address": ...}``). On Ray, the pool follows the cluster: when a
    node leaves, its actors go with it (a client that was running there fails with "worker
    node lost", the others run on the remaining actors), and a node that joins adds
    actors. ``config.round_timeout`` bounds each client's run; a client
    that overruns, raises or kills its worker is a failure of that round, and the worker is
    replaced. A ``VirtualClientManager`` (the default; give it a ``seed`` for reproducible
    sampling) holds ids only; any other ``ClientManager`` gets one small proxy per client.
    """
    ids = _client_ids(num_clients, clients_ids)
    resources = _client_resources(client_resources)
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if num_workers is not None and num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    config = config if config is not None else ServerConfig()
    if server is None:
        manager = client_manager if client_manager is not None else VirtualClientManager()
        server = Server(client_manager=manager,
                        strategy=strategy if strategy is not None else FedAvg())
    elif strategy is not None or client_manager is not None:
        log.warning("start_simulation got a server; its own strategy and client manager are used")

    started = time.monotonic()
    with running_engine(client_fn, ids, server.client_manager(), resources, backend=backend,
                        num_workers=num_workers, client_state_dir=client_state_dir,
                        ray_init_args=ray_init_args, ray_address=ray_address,
                        keep_initialised=keep_initialised,
                        actor_scheduling=actor_scheduling) as engine:
        log.info("simulation: %d clients, %d workers (%s backend), %d rounds", len(ids),
                 engine.num_workers, backend, config.num_rounds)
        history, elapsed = server.fit(num_rounds=config.num_rounds, timeout=config.round_timeout)
        log.info("simulation finished in %.2f s (%.2f s with start-up)", elapsed,
                 time.monotonic() - started)
    return history


@contextlib.contextmanager
def running_engine(
    client_fn: ClientFn,
    ids: Sequence[str],
    manager: ClientManager,
    resources: dict[str, float],
    *,
    backend: Backend = "local",
    num_workers: int | None = None,
    client_state_dir: str | Path | None = None,
    ray_init_args: dict[str, Any] | None = None,
    ray_address: str | None = None,
    keep_initialised: bool = False,
    actor_scheduling: str | Any = "DEFAULT",
) -> Iterator[Engine]:
    """Start the workers that run ``client_fn``'s clients, attach the clients ``ids`` to
    ``manager``, and stop the workers (and a Ray this started) on leaving."""
    ray_started = False
    if backend == "local":
        if resources.get("num_gpus", 0.0) > 0:
            raise ValueError("the local backend does not assign GPUs; use backend='ray' for "
                             "client_resources with num_gpus")
        workers = default_num_workers(resources.get("num_cpus", 1.0))
        engine = local_engine(client_fn, num_workers=min(workers, num_workers or workers),
                              state_dir=client_state_dir)
    else:
        from fedsilo.simulation.ray_backend import import_ray, ray_engine

        ray = import_ray()
        if ray_address is not None:
            ray_init_args = {**(ray_init_args or {}), "address": ray_address}
        if not ray.is_initialized():
            ray.init(**_ray_init_args(ray_init_args))
            ray_started = True
        elif ray_init_args:
            log.info("Ray is already initialised; ray_init_args are not used")
        engine = ray_engine(client_fn, client_resources=resources, num_workers=num_workers,
                            state_dir=client_state_dir, actor_scheduling=actor_scheduling)
    try:
        engine.wait_ready()
        _attach(manager, ids, engine)
        yield engine
    finally:
        engine.close()
        if ray_started and not keep_initialised:
            import_ray().shutdown()


def _client_ids(num_clients: int | None, clients_ids: Sequence[str] | None) -> Sequence[str]:
    if clients_ids is None:
        if num_clients is None:
            raise ValueError("give num_clients or clients_ids")
        if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
            raise ValueError(f"num_clients must be a positive int, got {num_clients!r}")
        return ClientIds(num_clients)
    if isinstance(clients_ids, str):
        raise TypeError("clients_ids must be a sequence of str, not one str")
    if num_clients is not None and len(clients_ids) != num_clients:
        raise ValueError(f"num_clients is {num_clients} but clients_ids holds "
                         f"{len(clients_ids)} ids; give one, or make them agree")
    if not clients_ids:
        raise ValueError("clients_ids is empty")
    bad = next((cid for cid in clients_ids if not isinstance(cid, str)), None)
    if bad is not None:
        raise TypeError(f"client ids must be str, got {type(bad).__name__} {bad!r}")
    return clients_ids


def _client_resources(client_resources: dict[str, float] | None) -> dict[str, float]:
    resources = dict(DEFAULT_CLIENT_RESOURCES)
    if client_resources:
        unknown = sorted(set(client_resources) - set(resources))
        if unknown:
            raise ValueError(f"client_resources takes num_cpus and num_gpus, got {unknown}")
        resources.update({k: float(v) for k, v in client_resources.items()})
    if any(v < 0 for v in resources.values()):
        raise ValueError(f"client_resources must be non-negative, got {client_resources}")
    if resources["num_cpus"] <= 0 and resources["num_gpus"] <= 0:
        raise ValueError("client_resources must reserve some num_cpus or num_gpus")
    return resources


def _ray_init_args(ray_init_args: dict[str, Any] | None) -> dict[str, Any]:
    if ray_init_args is None:
        return {"ignore_reinit_error": True, "include_dashboard": False}
    return dict(ray_init_args)


def _attach(manager: ClientManager, ids: Sequence[str], engine: Engine) -> None:
    if isinstance(manager, VirtualClientManager):
        manager.attach(ids, lambda cid: VirtualClientProxy(cid, engine))
        return
    if len(ids) >= PROXY_PER_CLIENT_WARNING:
        log.warning("%s keeps a proxy per client (%d clients); VirtualClientManager keeps "
                    "ids only", type(manager).__name__, len(ids))
    for cid in ids:
        if not manager.register(VirtualClientProxy(cid, engine)):
            raise ValueError(f"client id {cid!r} is listed twice; ids must be unique")

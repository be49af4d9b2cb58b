"""``run_simulation``: a ServerApp and a ClientApp on virtual nodes of this machine.

Called like Flower's ``flwr.simulation.run_simulation``. Node ``i`` (of
``num_supernodes``) gets ``node_config = {"partition-id": i, "num-partitions": n}``.
The nodes run on ``start_simulation``'s engine (a process pool by default, Ray on
request), and the ServerApp's Grid reaches them through the same proxies.
"""

from __future__ import annotations

import importlib
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from fedsilo.app import Context, RecordDict, UserConfig
from fedsilo.clientapp import ClientApp, ClientAppClient, node_context
from fedsilo.server.history import History
from fedsilo.serverapp import ServerApp, run_server_app
from fedsilo.simulation.app import Backend, _client_resources, running_engine
from fedsilo.simulation.client_manager import ClientIds, VirtualClientManager

log = logging.getLogger("fedsilo.simulation")

__all__ = ["ClientAppNodes", "load_app", "run_simulation"]

SIMULATION_RUN_ID = 1


def load_app(reference: str, kind: type) -> Any:
    """The object ``module:attribute`` names, which must be a ``kind``."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{reference!r} is not 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for {reference!r}: {exc}") from exc
    try:
        app = getattr(module, attribute)
    except AttributeError as exc:
        raise ValueError(f"{module_name!r} has no attribute {attribute!r}") from exc
    if not isinstance(app, kind):
        raise TypeError(f"{reference!r} is a {type(app).__name__}, not a {kind.__name__}")
    return app


@dataclass
class ClientAppNodes:
    """The client function of a simulation: node ``cid`` runs the ClientApp.

    It travels to the workers once. Each call builds the node's Context afresh; its
    ``state`` is restored from the simulation's state store (see ``ClientAppClient``), so it
    does not matter which worker ran the node before. The app is imported in the worker
    from ``module:attribute`` or, given as an object, unpickled.

    Parameters
    ----------
    app:
        The ClientApp, or its ``module:attribute``.
    num_partitions:
        The ``num-partitions`` of every node.
    run_config:
        The run's config.
    import_paths:
        Where the workers import the app from (default: this process's ``sys.path``).
    """

    app: ClientApp | str
    num_partitions: int
    run_config: UserConfig = field(default_factory=dict)
    import_paths: tuple[str, ...] = field(default_factory=lambda: tuple(sys.path))

    def __call__(self, cid: str) -> ClientAppClient:
        if isinstance(self.app, str):
            # A Ray actor does not start with the driver's sys.path (a spawned process
            # does): the app's directory must be importable there too.
            sys.path[:0] = [p for p in self.import_paths if p not in sys.path]
            self.app = load_app(self.app, ClientApp)
        context = node_context(int(cid) + 1, {"partition-id": int(cid),
                                              "num-partitions": self.num_partitions},
                               self.run_config, run_id=SIMULATION_RUN_ID)
        return ClientAppClient(self.app, context)  # type: ignore[arg-type]


def run_simulation(
    server_app: ServerApp | str,
    client_app: ClientApp | str,
    num_supernodes: int,
    backend_name: Backend = "local",
    backend_config: dict[str, Any] | None = None,
    enable_tf_gpu_growth: bool = False,
    verbose_logging: bool = False,
    run_config: UserConfig | None = None,
    num_workers: int | None = None,
) -> History | None:
    """Run ``server_app`` against ``num_supernodes`` virtual nodes running ``client_app``.

    Parameters
    ----------
    server_app, client_app:
        The apps, or their ``module:attribute``.
    num_supernodes:
        Virtual nodes; node ``i`` has ``partition-id`` ``i``.
    backend_name:
        ``"local"`` (a process pool on this machine, the default) or ``"ray"``.
    backend_config:
        ``{"client_resources": {"num_cpus": .., "num_gpus": ..}, "init_args": {..}}``
        as in Flower: what one running node reserves, and ``ray.init``'s arguments.
    enable_tf_gpu_growth:
        Not used (TensorFlow is not set up by fedsilo).
    verbose_logging:
        Log at DEBUG.
    run_config:
        The run's config (``Context.run_config``), on both sides.
    num_workers:
        The most nodes running at once (default: as many as the resources fit).

    Returns the legacy History for a ServerApp made from ``server_fn``, else None.
    """
    if isinstance(num_supernodes, bool) or not isinstance(num_supernodes, int) \
            or num_supernodes < 1:
        raise ValueError(f"num_supernodes must be a positive int, got {num_supernodes!r}")
    if verbose_logging:
        logging.getLogger("fedsilo").setLevel(logging.DEBUG)
    app: ServerApp = (load_app(server_app, ServerApp) if isinstance(server_app, str)
                      else server_app)
    config = dict(backend_config or {})
    unknown = sorted(set(config) - {"client_resources", "init_args"})
    if unknown:
        raise ValueError(f"backend_config takes client_resources and init_args, got {unknown}")
    resources = _client_resources(config.get("client_resources"))
    run_config = dict(run_config or {})
    nodes = ClientAppNodes(client_app, num_supernodes, run_config)
    manager = VirtualClientManager()
    # Each node's context.state is kept here between the rounds it is sampled in, whichever
    # worker runs it.
    with tempfile.TemporaryDirectory(prefix="fedsilo-node-state-") as state_dir, \
            running_engine(nodes, ClientIds(num_supernodes), manager, resources,
                           backend=backend_name, num_workers=num_workers,
                           client_state_dir=state_dir,
                           ray_init_args=config.get("init_args")) as engine:
        log.info("run_simulation: %d nodes, %d workers (%s backend)", num_supernodes,
                 engine.num_workers, backend_name)
        context = Context(run_id=SIMULATION_RUN_ID, node_id=0, node_config={},
                          state=RecordDict(), run_config=run_config)
        return run_server_app(app, manager, context)

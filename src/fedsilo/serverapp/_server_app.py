"""``ServerApp``: the code that runs a federation from the server's side.

Two forms, as in Flower: a function registered with ``@app.main()`` that receives a
``Grid`` and the ``Context``, or the older ``ServerApp(server_fn=...)`` whose
``server_fn(context)`` returns ``ServerAppComponents`` (a legacy strategy and a
``ServerConfig``), run by the same round loop as ``start_server``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from fedsilo.app import Context
from fedsilo.app._lifespan import LifespanFn, as_lifespan, no_lifespan
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.history import History
from fedsilo.server.server import Server
from fedsilo.server.server_config import ServerConfig
from fedsilo.server.strategy import Strategy
from fedsilo.serverapp._grid import Grid, ProxyGrid

log = logging.getLogger("fedsilo.server")

__all__ = ["ServerApp", "ServerAppComponents", "run_server_app"]

MainFn = Callable[[Grid, Context], None]


@dataclass
class ServerAppComponents:
    """What ``server_fn`` returns: the legacy pieces a ServerApp runs with.

    Parameters
    ----------
    server:
        A ready ``Server`` (its strategy and client manager are used as they are).
    config:
        Rounds and round timeout (default ``ServerConfig()``: one round).
    strategy:
        The legacy strategy (default FedAvg).
    client_manager:
        Not used: the nodes are those of the run.
    """

    server: Server | None = None
    config: ServerConfig | None = None
    strategy: Strategy | None = None
    client_manager: ClientManager | None = None


class ServerApp:
    """A federation's server-side app.

    Parameters
    ----------
    server_fn:
        The older form: ``server_fn(context)`` returns ``ServerAppComponents``.
    """

    def __init__(self, server_fn: Callable[[Context], ServerAppComponents] | None = None
                 ) -> None:
        self._server_fn = server_fn
        self._main: MainFn | None = None
        self._lifespan: Callable[[Context], AbstractContextManager[None]] = no_lifespan

    def lifespan(self) -> Callable[[LifespanFn], LifespanFn]:
        """Register ``fn(context)``, a generator that yields once: its code before the
        ``yield`` runs before the app, the code after it once the app has ended."""
        def decorator(fn: LifespanFn) -> LifespanFn:
            self._lifespan = as_lifespan(fn)
            return fn
        return decorator

    def main(self) -> Callable[[MainFn], MainFn]:
        """Register the function that runs the federation: ``main(grid, context)``."""
        if self._server_fn is not None:
            raise ValueError("Use either `@app.main()` or `server_fn`, but not both.")

        def decorator(fn: MainFn) -> MainFn:
            if self._main is not None:
                raise ValueError("A main function is already registered with this ServerApp.")
            self._main = fn
            return fn
        return decorator

    def __call__(self, grid: Grid, context: Context) -> History | None:
        """Run the app on ``grid``, inside the lifespan function; the older form returns its
        History."""
        with self._lifespan(context):
            return self._run(grid, context)

    def _run(self, grid: Grid, context: Context) -> History | None:
        if self._main is not None:
            self._main(grid, context)
            return None
        if self._server_fn is None:
            raise ValueError("this ServerApp has neither a @app.main() function nor a "
                             "server_fn; register one")
        if not isinstance(grid, ProxyGrid):
            raise TypeError("a ServerApp made from server_fn runs on fedsilo's own Grid")
        components = self._server_fn(context)
        if not isinstance(components, ServerAppComponents):
            raise TypeError(f"server_fn must return ServerAppComponents, got "
                            f"{type(components).__name__}")
        return _run_legacy(components, grid)


def _run_legacy(components: ServerAppComponents, grid: ProxyGrid) -> History:
    config = components.config if components.config is not None else ServerConfig()
    server = components.server
    if server is None:
        server = Server(client_manager=grid.client_manager, strategy=components.strategy)
    grid.adopt_server(server)
    history, elapsed = server.fit(num_rounds=config.num_rounds, timeout=config.round_timeout)
    log.info("server_fn run finished: %d rounds in %.2f s", config.num_rounds, elapsed)
    return history


def run_server_app(app: ServerApp, client_manager: ClientManager, context: Context
                   ) -> History | None:
    """Run ``app`` against the nodes of ``client_manager``."""
    grid = ProxyGrid(client_manager, run_id=context.run_id)
    try:
        return app(grid, context)
    finally:
        grid.close()

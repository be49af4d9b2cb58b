"""The server side of an app written the seed's way: a function that returns the strategy.

``[app] server = "module:function"`` names a function in the app's directory. The orchestrator
imports it (the directory first on ``sys.path``) and calls it with a :class:`ServerContext`,
shaped like Flower's Context; it returns the strategy, with whatever evaluation, saving and
reporting the app wants in it, and a ``ServerConfig``::

    def server_fn(context):
        rounds = int(context.run_config.get("num-server-rounds", 3))
        strategy = fl.server.strategy.FedAvg(evaluate_fn=..., ...)
        return strategy, fl.server.ServerConfig(num_rounds=rounds)

An object with ``strategy`` and ``config`` attributes (Flower's ``ServerAppComponents``) is
taken as well. The orchestrator knows nothing of the model: it keeps the final parameters as
arrays, and the History.

A Flower app (:func:`load_flower_server_app`) names its ServerApp in ``pyproject.toml``; the
orchestrator runs that, with the app's ``[tool.flwr.app.config]`` overridden by ``[app]
config`` as its run config.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fedsilo as fl
from fedsilo.deploy.errors import ValidationError
from fedsilo.serverapp import ServerApp

__all__ = ["ServerContext", "load_flower_server_app", "load_server_app"]

_APP_DIRS: set[Path] = set()  # the directories apps were imported from, in this process


@dataclass(frozen=True)
class ServerContext:
    """What the app's server function is given.

    Parameters
    ----------
    run_id:
        The federation run's id (the same in every site's job Context).
    run_config:
        The app's run config as the federation set it (``[app] config``).
    node_config:
        The server's own settings: ``data-dir`` (``[server] data``, when given),
        ``output-dir`` (``[server] output``), ``num-sites``, ``min-sites`` (the sites the
        run needs: ``[strategy] min_sites``, else all) and ``site-names`` (comma-separated).
    """

    run_id: str
    run_config: dict[str, Any] = field(default_factory=dict)
    node_config: dict[str, Any] = field(default_factory=dict)


def load_server_app(directory: Path, target: str, context: ServerContext
                    ) -> tuple[fl.server.strategy.Strategy, fl.server.ServerConfig]:
    """Import ``target`` (``module:function``) from ``directory``, call it with ``context``."""
    module_name, _, function_name = target.partition(":")
    with _on_path(directory):
        _forget_other_apps(directory)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValidationError(f"app.server {target!r}: cannot import {module_name!r} from "
                                  f"{directory}: {exc}") from exc
        function = getattr(module, function_name, None)
        if not callable(function):
            raise ValidationError(f"app.server {target!r}: {module_name} has no function "
                                  f"{function_name!r}")
        made = function(context)
    strategy, config = _components(made, target)
    return strategy, config


def load_flower_server_app(directory: Path, overrides: dict[str, Any]
                           ) -> tuple[ServerApp, dict[str, Any]]:
    """The ServerApp a Flower app directory names, and its run config with ``overrides``
    (``[app] config``) on top of ``[tool.flwr.app.config]``."""
    from fedsilo.app.project import AppProjectError, load_app_project
    from fedsilo.simulation.run_app import load_app

    try:
        project = load_app_project(directory)
        unknown = sorted(set(overrides) - set(project.run_config))
        if unknown:  # as `fedsilo run --run-config` refuses them
            raise ValidationError(f"app.config {', '.join(unknown)}: not in the app's "
                                  f"[tool.flwr.app.config] (it has: "
                                  f"{', '.join(sorted(project.run_config))})")
        run_config: dict[str, Any] = {**project.run_config, **overrides}
        with _on_path(directory):
            _forget_other_apps(directory)
            app = load_app(project.serverapp, ServerApp)
    except (AppProjectError, ValueError, TypeError, ImportError) as exc:
        raise ValidationError(f"app {directory}: {exc}") from exc
    return app, run_config


def _components(made: Any, target: str
                ) -> tuple[fl.server.strategy.Strategy, fl.server.ServerConfig]:
    if isinstance(made, tuple) and len(made) == 2:
        strategy, config = made
    else:
        strategy, config = getattr(made, "strategy", None), getattr(made, "config", None)
    if not isinstance(strategy, fl.server.strategy.Strategy):
        raise ValidationError(f"app.server {target!r} must return (strategy, ServerConfig); "
                              f"its strategy is a {type(strategy).__name__}")
    if not isinstance(config, fl.server.ServerConfig):
        raise ValidationError(f"app.server {target!r} must return (strategy, ServerConfig); "
                              f"its config is a {type(config).__name__}")
    return strategy, config


@contextmanager
def _on_path(directory: Path) -> Iterator[None]:
    entry = str(directory.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def _forget_other_apps(directory: Path) -> None:
    """Drop the modules imported from other apps' directories (another app's ``server.py``
    or ``task.py``, say), so that this app's own modules of the same names are imported."""
    root = directory.resolve()
    others = [d for d in _APP_DIRS if d != root]
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if origin and any(Path(origin).resolve().is_relative_to(d) for d in others):
            del sys.modules[name]
    _APP_DIRS.add(root)

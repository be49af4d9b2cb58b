"""``fedsilo server``: run a federation server from options or a TOML file, resumable."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from fedsilo.cli._output import absolute, fail, setup_logging
from fedsilo.server import ServerConfig, SimpleClientManager, start_server
from fedsilo.server.checkpoint import latest_round
from fedsilo.server.strategy import FedAvg, Strategy

log = logging.getLogger("fedsilo.server")

# Settings a TOML file may hold, with the defaults used when neither it nor an option sets them.
DEFAULTS: dict[str, Any] = {
    "address": "[::]:8080",
    "rounds": 3,
    "round_timeout": 600.0,
    "min_clients": 2,
    "fraction_fit": 1.0,
    "fraction_evaluate": 1.0,
    "seed": None,
    "strategy": None,
    "checkpoint_dir": None,
}


def server(
    app_dir: Annotated[Path | None, typer.Argument(
        help="An app directory: serve its ServerApp (nodes join with `fedsilo client`).")
    ] = None,
    certificates: Annotated[Path | None, typer.Option(
        help="With APP_DIR: directory with ca.pem, server.pem, server.key (TLS).")] = None,
    run_config: Annotated[str | None, typer.Option(
        help='With APP_DIR: overrides of the app\'s run config, "key=value ...".')] = None,
    address: Annotated[str | None, typer.Option(
        help="host:port to listen on (default [::]:8080).")] = None,
    rounds: Annotated[int | None, typer.Option(
        min=1, help="Rounds to run in all, counting those done before a resume (default 3).")
    ] = None,
    round_timeout: Annotated[float | None, typer.Option(
        min=0.001, help="Seconds a client may take to answer each instruction, fit and "
                        "evaluate each (default 600); a client that fails or times out 3 "
                        "rounds in a row is then left out until it answers a liveness probe.")
    ] = None,
    min_clients: Annotated[int | None, typer.Option(
        min=1, help="Clients to wait for, and to sample at least, each round (default 2).")
    ] = None,
    fraction_fit: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Share of the clients that train each round (default 1.0).")
    ] = None,
    fraction_evaluate: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Share of the clients that evaluate each round (default 1.0).")
    ] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed of the client sampling, so a run can be repeated.")] = None,
    strategy: Annotated[str | None, typer.Option(
        help="'module:name' of a Strategy, a Strategy class or a function returning one; "
             "replaces the built-in FedAvg and its min/fraction options.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", dir_okay=False,
        help="TOML file with any of the settings above (snake_case keys); options win.")
    ] = None,
    checkpoint_dir: Annotated[Path | None, typer.Option(
        help="Directory for a checkpoint after every round.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue from the newest checkpoint in --checkpoint-dir, if any.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run a federation server; with --checkpoint-dir and --resume, continue after a crash."""
    setup_logging(True)
    if verbose:
        logging.getLogger("fedsilo").setLevel(logging.DEBUG)
    if app_dir is not None:
        from fedsilo.cli.app_server import serve_app

        return serve_app(app_dir, address or str(DEFAULTS["address"]), certificates, run_config)
    given = {"address": address, "rounds": rounds, "round_timeout": round_timeout,
             "min_clients": min_clients, "fraction_fit": fraction_fit,
             "fraction_evaluate": fraction_evaluate, "seed": seed, "strategy": strategy,
             "checkpoint_dir": None if checkpoint_dir is None else absolute(checkpoint_dir)}
    try:
        settings = resolve_settings(given, read_config(absolute(config)) if config else {})
        if settings["rounds"] < 1:
            raise ValueError(f"rounds must be at least 1, got {settings['rounds']}")
        directory = settings["checkpoint_dir"]
        check_resume(None if directory is None else Path(directory), resume)
        check_port_free(settings["address"])
        history = start_server(
            server_address=settings["address"],
            config=ServerConfig(num_rounds=settings["rounds"],
                                round_timeout=settings["round_timeout"]),
            strategy=build_strategy(settings),
            client_manager=SimpleClientManager(seed=settings["seed"]),
            checkpoint_dir=directory,
        )
    except (ValueError, TypeError, ImportError, OSError) as exc:
        fail(str(exc), code=2 if isinstance(exc, ValueError | TypeError | ImportError) else 1)
    typer.echo(repr(history))


def read_config(path: Path) -> dict[str, Any]:
    """The settings in a TOML file; unknown keys are an error (a typo must not pass silently)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{path}: unknown settings {unknown}; known: {sorted(DEFAULTS)}")
    if data.get("checkpoint_dir") is not None:  # relative to the file, like every config path
        data["checkpoint_dir"] = Path(path).parent / Path(str(data["checkpoint_dir"])).expanduser()
    return data


def resolve_settings(given: dict[str, Any], from_file: dict[str, Any]) -> dict[str, Any]:
    """Options given on the command line, else the file's values, else the defaults."""
    settings = dict(DEFAULTS)
    settings.update(from_file)
    settings.update({k: v for k, v in given.items() if v is not None})
    return settings


def check_resume(directory: Path | None, resume: bool) -> None:
    """Refuse to overwrite a run by accident, and ``--resume`` without a directory."""
    if directory is None:
        if resume:
            raise ValueError("--resume needs --checkpoint-dir (the directory of the run)")
        return
    done = latest_round(directory)
    if done is not None and not resume:
        raise ValueError(
            f"{directory} holds the checkpoint of round {done}; pass --resume to continue that "
            "run, or choose an empty --checkpoint-dir to start a new one")
    if done is None and resume:
        log.info("no checkpoint in %s yet: starting from the beginning", directory)


def check_port_free(address: str) -> None:
    """Refuse an address another process listens on, before gRPC tries (and logs) the bind.

    The probe sets SO_REUSEADDR, as servers do: connections of a run that just ended linger
    in TIME_WAIT on the port for a minute and must not keep the next run (a ``--resume``)
    from starting; a socket that listens there still refuses it.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "::"
    if not port.isdigit() or int(port) == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, int(port)))
    except OSError as exc:
        raise OSError(f"cannot listen on {address}: {exc.strerror or exc}; choose another "
                      "port with --address") from exc


def build_strategy(settings: dict[str, Any]) -> Strategy:
    """The named strategy, or FedAvg built from the min/fraction settings."""
    if settings["strategy"] is None:
        return FedAvg(
            fraction_fit=settings["fraction_fit"],
            fraction_evaluate=settings["fraction_evaluate"],
            min_fit_clients=settings["min_clients"],
            min_evaluate_clients=settings["min_clients"],
            min_available_clients=settings["min_clients"],
        )
    spec = str(settings["strategy"])
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--strategy {spec!r}: expected 'module:name', e.g. 'mypkg.fl:strategy'")
    if os.getcwd() not in sys.path:  # as `python -m` would: the user's own modules import
        sys.path.insert(0, os.getcwd())
    found = getattr(importlib.import_module(module_name), attribute, None)
    if found is None:
        raise ValueError(f"--strategy {spec!r}: module {module_name} has no {attribute!r}")
    built = found if isinstance(found, Strategy) else found()
    if not isinstance(built, Strategy):
        raise TypeError(f"--strategy {spec!r} gave a {type(built).__name__}, not a Strategy")
    return built

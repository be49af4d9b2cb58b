"""What every sub-command shares at the edge: consoles, logging, paths and one-line errors.

A command's output is read in terminals and in CI logs alike. In a terminal rich may wrap and
draw; anywhere else a line stays one line (a metric beside its value, a whole path), so that
``grep`` finds it. Errors are one line on stderr, ``fedsilo <command>: error: <what to fix>``,
and never a traceback: the entry point turns any exception that escapes a command into that
line (``FEDSILO_TRACEBACK=1`` shows the traceback for a bug report).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from fedsilo.common import logger as fedsilo_logger

__all__ = ["COMMAND", "INTERRUPTED", "absolute", "error_line", "fail", "make_console",
           "pem_fingerprint", "setup_logging"]

INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)
# Libraries whose INFO lines are per request, not per step: shown only when they warn.
_CHATTY_LOGGERS = ("httpx", "httpcore", "uvicorn.access", "urllib3", "botocore", "asyncio")


def make_console(stderr: bool = False) -> Console:
    """A console that wraps and draws in a terminal and writes plain long lines elsewhere."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=1000, soft_wrap=True, no_color=True)


def setup_logging(verbose: bool, *, default: int = logging.WARNING) -> None:
    """fedsilo's own log at INFO with ``--verbose`` (else ``default``); libraries only warn.

    A command prints every log line through one root handler, with the time: fedsilo's
    console handler (fedsilo.common.logger), which a plain ``import fedsilo`` installs, is
    taken off so that fedsilo's lines do not come twice.
    """
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    fedsilo_logger.logger.removeHandler(fedsilo_logger.console_handler)
    fedsilo_logger.logger.setLevel(logging.INFO if verbose else default)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def absolute(path: Path) -> Path:
    """``path`` made absolute against the working directory, once, where it enters."""
    return Path(os.path.abspath(path.expanduser()))


COMMAND = ["fedsilo"]  # the words of the command being run; the entry point sets them


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with one line on stderr."""
    typer.echo(error_line(message), err=True)
    raise typer.Exit(code=code)


def error_line(message: object) -> str:
    """``fedsilo <command>: error: <message>``, on one line."""
    return f"{' '.join(COMMAND)}: error: {' '.join(str(message).split()) or 'no details'}"


def pem_fingerprint(path: Path, *, certificate_only: bool = False) -> str:
    """The fingerprint of the public key or certificate in ``path`` (a certificate only, with
    ``certificate_only``); one-line errors otherwise."""
    from cryptography import x509

    from fedsilo.deploy.identity import fingerprint, load_public_key

    what = "certificate" if certificate_only else "public key or certificate"
    path = absolute(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror or exc}")
    try:
        if certificate_only:
            return fingerprint(x509.load_pem_x509_certificate(data))
        return fingerprint(load_public_key(data))
    except (ValueError, TypeError) as exc:
        fail(f"{path} is not a PEM {what} ({str(exc)[:120]})")

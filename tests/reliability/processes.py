"""Command lines for the server and scripted-client processes of reliability tests.

Processes run in a ``tests.interop.harness.ProcessGroup`` (own session, log file, killed
when the block ends).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.interop.harness import ProcessGroup, fedsilo_environ

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
SCRIPTED_CLIENT = HERE / "scripted_client.py"


def environ() -> dict[str, str]:
    """fedsilo under test first, then the repository (for ``--strategy tests....``)."""
    env = fedsilo_environ()
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(REPO_ROOT)])
    return env


def server_argv(*options: str) -> list[str]:
    return [sys.executable, "-m", "fedsilo.cli.main", "server", *options]


def client_argv(address: str, name: str, offset: float, examples: int, workdir: Path,
                *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPTED_CLIENT), "--address", address, "--name", name,
            "--offset", str(offset), "--examples", str(examples), "--marker-dir", str(workdir),
            "--release-file", str(workdir / "release"), *extra]


def assert_all_exit_cleanly(group: ProcessGroup, timeout: float) -> None:
    codes = group.wait_all(timeout)
    assert all(code == 0 for code in codes.values()), f"{codes}\n{group.report()}"

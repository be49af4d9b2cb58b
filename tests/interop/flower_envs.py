"""Virtual environments with a given Flower release, built once and cached between runs.

The cache lives in ``$FEDSILO_TEST_VENVS`` (default ``~/.cache/fedsilo-test-venvs``). A venv is
reused only when its marker file records a successful install of exactly the requested
packages; anything else is wiped and rebuilt. A failed build raises ``FlowerEnvError`` with
pip's output, which the fixtures turn into a test failure (never a skip).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MARKER_NAME = "fedsilo-install.json"
VENV_TIMEOUT_S = 180
PIP_TIMEOUT_S = 900


class FlowerEnvError(RuntimeError):
    """Creating the venv or installing into it failed; the message holds the tool's output."""


@dataclass(frozen=True)
class FlowerEnvSpec:
    """What one cached venv holds: pip requirements, and whether fedsilo is installed too."""

    name: str
    requirements: tuple[str, ...]
    with_fedsilo: bool = False

    def request(self) -> dict[str, object]:
        """The marker's identity: a venv built for a different request is rebuilt."""
        return {
            "requirements": list(self.requirements),
            "fedsilo_editable": str(REPO_ROOT) if self.with_fedsilo else None,
            "python": ".".join(map(str, sys.version_info[:3])),
        }


FLWR_1_3 = FlowerEnvSpec("flwr-1.3.0", ("flwr==1.3.0", "scikit-learn"))
FLWR_NEWEST = FlowerEnvSpec("flwr-newest", ("flwr", "scikit-learn"), with_fedsilo=True)
# Only flwr: reference runs of Flower's functions and strategies, and its name lists.
FLWR_NEWEST_PLAIN = FlowerEnvSpec("flwr-newest-plain", ("flwr",))
# Flower with its Ray-based virtual-client engine, for the simulation benchmark.
FLWR_SIMULATION = FlowerEnvSpec("flwr-simulation", ("flwr[simulation]==1.42.0", "psutil"))


@dataclass(frozen=True)
class FlowerEnv:
    """A ready venv: its interpreter and the Flower version pip installed into it."""

    name: str
    root: Path
    flwr_version: str

    @property
    def python(self) -> str:
        return str(self.root / "bin" / "python")

    def environ(self) -> dict[str, str]:
        """Environment for processes run with this venv: unbuffered, no Flower telemetry."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(FLWR_TELEMETRY_ENABLED="0", PYTHONUNBUFFERED="1")
        return env


def cache_dir() -> Path:
    configured = os.environ.get("FEDSILO_TEST_VENVS")
    path = Path(configured) if configured else Path.home() / ".cache" / "fedsilo-test-venvs"
    return path.expanduser().resolve()


def ensure_flower_env(spec: FlowerEnvSpec, cache: Path | None = None) -> FlowerEnv:
    """Return the cached venv for ``spec``, building it first if it is missing or incomplete."""
    cache = cache if cache is not None else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / spec.name
    with _exclusive(cache / f".{spec.name}.lock"):
        recorded = _read_marker(root)
        if recorded is not None and recorded.get("request") == spec.request():
            return FlowerEnv(spec.name, root, str(recorded["flwr_version"]))
        shutil.rmtree(root, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(root)], VENV_TIMEOUT_S, "creating the venv")
        python = str(root / "bin" / "python")
        _run([python, "-m", "pip", "install", "--no-input", *spec.requirements],
             PIP_TIMEOUT_S, f"pip install {' '.join(spec.requirements)}")
        if spec.with_fedsilo:
            _run([python, "-m", "pip", "install", "--no-input", "--no-deps", "-e",
                  str(REPO_ROOT)], PIP_TIMEOUT_S, "pip install --no-deps -e <fedsilo>")
        version = _run([python, "-c", "import flwr; print(flwr.__version__)"], 120,
                       "importing flwr").strip()
        marker = {"request": spec.request(), "flwr_version": version, "install": "ok"}
        (root / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")
        return FlowerEnv(spec.name, root, version)


def _read_marker(root: Path) -> dict[str, object] | None:
    try:
        recorded = json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or recorded.get("install") != "ok":
        return None
    if not (root / "bin" / "python").exists():
        return None
    return recorded


def _run(argv: Sequence[str], timeout: float, what: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise FlowerEnvError(f"{what} took longer than {timeout} s: {' '.join(argv)}\n"
                             f"{_text(exc.stdout)}\n{_text(exc.stderr)}") from exc
    except OSError as exc:
        raise FlowerEnvError(f"{what} could not start: {' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise FlowerEnvError(f"{what} failed with exit status {done.returncode}: "
                             f"{' '.join(argv)}\n--- stdout ---\n{done.stdout}\n"
                             f"--- stderr ---\n{done.stderr}")
    return done.stdout


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialize builds of one venv across concurrent test sessions."""
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""One site's client as a separate process, with a handle to watch and stop it.

Each site runs in its own process, as it would on its own machine: it reads only its own
channel directory and talks to the server only over the network. The handle follows the
shape of a job: launch, poll, wait, stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import fedsilo

__all__ = ["ClientProcessError", "SiteProcess"]

CLIENT_MODULE = "fedsilo.examples.fraud.client"


class ClientProcessError(RuntimeError):
    """A site's client process failed; the message names the site and ends with its output."""

    def __init__(self, site: str, message: str, output_tail: str) -> None:
        super().__init__(f"{site}: {message}\n--- last lines of its output ---\n{output_tail}")
        self.site = site
        self.output_tail = output_tail


@dataclass
class SiteProcess:
    """A running ``python -m fedsilo.examples.fraud.client`` for one site."""

    site: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def launch(
        cls,
        site: str,
        *,
        server_address: str,
        channel: Path,
        model_dir: Path,
        log_path: Path,
        penalty: str = "l2",
        max_iter: int = 10,
        max_wait_time: float = 30.0,
    ) -> SiteProcess:
        """Start the client the way a training job does: options and ``SM_*`` variables."""
        command = [
            sys.executable, "-m", CLIENT_MODULE,
            "--server-address", server_address,
            "--penalty", penalty,
            "--max-iter", str(max_iter),
            "--max-wait-time", str(max_wait_time),
        ]
        env = dict(os.environ)
        env["SM_CHANNEL_TRAIN"] = str(channel)
        env["SM_MODEL_DIR"] = str(model_dir)
        # Find this fedsilo even when it is not installed (run from a source tree).
        source_root = str(Path(fedsilo.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (source_root, env.get("PYTHONPATH", "")) if p)
        env.setdefault("OMP_NUM_THREADS", "1")  # one small model per process: no thread pools
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env)
        return cls(site=site, process=process, log_path=log_path)

    def poll(self) -> int | None:
        """The exit code, or None while the process runs."""
        return self.process.poll()

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the exit code; raise ClientProcessError after."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise ClientProcessError(
                self.site, f"client still running {timeout:.0f} s after the federation ended",
                self.output_tail()) from exc

    def check(self) -> None:
        """Raise ClientProcessError if the process has exited with an error."""
        code = self.process.poll()
        if code not in (None, 0):
            raise ClientProcessError(self.site, f"client exited with code {code}",
                                     self.output_tail())

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the process if it still runs; kill it after ``grace`` seconds."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(grace)

    def output_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines the process wrote (stdout and stderr)."""
        if not self.log_path.is_file():
            return "(no output)"
        with self.log_path.open(encoding="utf-8", errors="replace") as handle:
            tail = deque(handle, maxlen=lines)
        return "".join(tail).rstrip() or "(no output)"

"""A Ray cluster of real nodes on 127.0.0.1, started with ``ray start`` for one test.

Every port the nodes listen on is chosen free at run time and passed explicitly (Ray's
defaults, such as 10001 for the client server or 52365 for the dashboard agent, may be
taken by another cluster on the same machine), and the cluster has a temporary directory
of its own. Closing it kills the processes of this cluster only: those whose command line
names its temporary directory or its control store's address, never every Ray process of
the machine as ``ray stop`` would.

Ray's servers listen on every interface whatever the node's address, so the cluster demands
a token of its own (Ray's token authentication, with the token in the environment rather
than in the home directory's ``~/.ray/auth_token``, which other clusters of the machine
share): ``attach_driver`` gives it to this process before it joins.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

import psutil

from tests.conftest import free_port

RAY = Path(sys.executable).parent / "ray"
REPO_ROOT = Path(__file__).resolve().parents[2]


class RayCluster:
    """A head node and ``extra_nodes`` worker nodes, each with ``cpus`` CPUs."""

    def __init__(self, extra_nodes: int = 1, cpus: int = 1) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Short: Ray's socket paths live under it and must fit in 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")
        self.raylets: list[int] = []  # raylet pid of each node, head first
        self._attached = False
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self._env = {**os.environ, **self.auth, "RAY_USAGE_STATS_ENABLED": "0",
                     "PYTHONPATH": os.pathsep.join(
                         p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
        self._env.pop("RAY_ADDRESS", None)
        try:
            self._start(["--head", f"--port={self.port}", "--include-dashboard=false",
                         f"--ray-client-server-port={free_port()}",
                         f"--temp-dir={self.temp_dir}"], cpus)
            for _ in range(extra_nodes):
                self._start([f"--address={self.address}"], cpus)
        except BaseException:
            self.close()
            raise

    def add_node(self, cpus: int = 1) -> None:
        """Start one more worker node (it joins the running cluster)."""
        self._start([f"--address={self.address}"], cpus)

    def _start(self, options: list[str], cpus: int) -> None:
        before = set(self._raylet_pids())
        subprocess.run(
            [str(RAY), "start", *options, "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
             "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}",
             f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
             f"--runtime-env-agent-port={free_port()}"],
            env=self._env, check=True, capture_output=True, timeout=180)
        (raylet,) = set(self._raylet_pids()) - before
        self.raylets.append(raylet)

    def _own(self) -> list[psutil.Process]:
        """This cluster's processes."""
        found = []
        for process in psutil.process_iter(["cmdline"]):
            line = " ".join(process.info["cmdline"] or ())
            if self.temp_dir in line or self.address in line:
                found.append(process)
        return found

    def _raylet_pids(self) -> list[int]:
        return [p.pid for p in self._own() if p.info["cmdline"]
                and Path(p.info["cmdline"][0]).name == "raylet"]

    def attach_driver(self) -> None:
        """Give this process the cluster's token, so that ``ray.init(address=...)`` here is
        let in (Ray reads the mode and the token once; both caches are refreshed)."""
        os.environ.update(self.auth)
        self._attached = True
        _refresh_ray_auth()

    def kill_raylet(self, node: int) -> None:
        """SIGKILL the raylet of node ``node`` (0: the head)."""
        os.kill(self.raylets[node], signal.SIGKILL)

    def close(self) -> None:
        if self._attached:  # this process speaks to other clusters as it did before
            for name in self.auth:
                os.environ.pop(name, None)
            _refresh_ray_auth()
        for process in self._own():
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(self._own(), timeout=20)

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _refresh_ray_auth() -> None:
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()

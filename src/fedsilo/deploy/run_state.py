"""A federation run's state on disk: what ``fedsilo status`` shows and ``--resume`` continues.

The orchestrator keeps ``<output>/state.json`` current (rewritten atomically on every change)::

    {"run_id": "20260101120000-ab12", "pid": 4242, "status": "running",
     "address": "127.0.0.1:40123", "public_address": "127.0.0.1:40123",
     "app": {"digest": "sha256:...", "server": "server:server_fn"},
     "rounds": 5, "round": 3, "metrics": {"loss": 0.41, "accuracy": 0.93},
     "jobs": {"site1": {"name": "fl-site1-...", "status": "InProgress",
                        "secondary": "Training"}},
     "updated": 1767268800.0}

``status`` is ``running``, ``finished`` or ``failed`` (with ``error``). The server's round
checkpoints sit in ``<output>/checkpoints``; together they are what a restarted orchestrator
needs to go on with the same run: the same run id and server address, the same site jobs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from fedsilo.deploy.errors import Conflict, NotFound

__all__ = ["RunState", "read_run_state", "run_is_alive"]

STATE_FILE = "state.json"


def read_run_state(output: Path) -> dict[str, Any]:
    """The state a run left in ``output``; NotFound when there is none."""
    path = output / STATE_FILE
    if not path.is_file():
        raise NotFound(f"no federation run in {output} (no {STATE_FILE})")
    return dict(json.loads(path.read_text()))


def run_is_alive(state: dict[str, Any]) -> bool:
    """Whether the orchestrator that writes ``state`` is still running."""
    pid = state.get("pid")
    if state.get("status") != "running" or not isinstance(pid, int):
        return False
    try:
        return psutil.Process(pid).create_time() <= float(state.get("started", 0)) + 1
    except psutil.NoSuchProcess:
        return False


class RunState:
    """The live state of one run, written to ``state.json`` on every change."""

    def __init__(self, output: Path, data: dict[str, Any]) -> None:
        self.path = output / STATE_FILE
        self.data = data
        self._lock = threading.Lock()

    @classmethod
    def begin(cls, output: Path, run_id: str, *, resume: bool) -> RunState:
        """A new run's state, or (``resume``) the interrupted run's, now owned by this process.

        Refuses while another orchestrator still runs in ``output``, and refuses to resume a
        run that finished or that is not there.
        """
        output.mkdir(parents=True, exist_ok=True)
        previous: dict[str, Any] | None = None
        if (output / STATE_FILE).is_file():
            previous = read_run_state(output)
            if run_is_alive(previous):
                raise Conflict(f"run {previous['run_id']} is still going in {output} (process "
                               f"{previous['pid']}); wait for it or stop it first")
        if resume:
            if previous is None:
                raise NotFound(f"nothing to resume in {output}: no {STATE_FILE} from an "
                               "earlier run")
            if previous.get("status") == "finished":
                raise Conflict(f"run {previous['run_id']} in {output} finished; nothing to "
                               "resume")
            data = {**previous, "status": "running", "error": None}
        else:
            data = {"run_id": run_id, "jobs": {}, "round": 0, "metrics": {}, "status": "running"}
        data.update(pid=os.getpid(), started=psutil.Process().create_time())
        state = cls(output, data)
        state.save()
        return state

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.data.update(fields)
        self.save()

    def on_round(self, server_round: int, figures: dict[str, float]) -> None:
        self.update(round=server_round, metrics=dict(figures))

    def record_job(self, site: str, name: str) -> None:
        """A job created for ``site``: the one to reattach to, and one more in its list."""
        with self._lock:
            job = self.data["jobs"].setdefault(site, {})
            job.update(name=name, names=[*job.get("names", []), name])
        self.save()

    def on_job(self, site: str, description: dict[str, Any]) -> None:
        with self._lock:
            job = self.data["jobs"].setdefault(site, {})
            job.update(name=description.get("TrainingJobName", job.get("name")),
                       status=description.get("TrainingJobStatus", job.get("status")),
                       secondary=description.get("SecondaryStatus", ""))
        self.save()

    def save(self) -> None:
        with self._lock:
            text = json.dumps({**self.data, "updated": time.time()}, indent=2) + "\n"
            partial = self.path.with_name(f".{self.path.name}.{threading.get_ident()}")
            partial.write_text(text)
            os.replace(partial, self.path)

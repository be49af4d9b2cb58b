"""A job's processes and their outcome: start under the wrapper (and jail), signal, judge.

The pieces the runner needs around one job's process group, kept apart from its bookkeeping:
the handle on the wrapper process (a child of this agent, or one adopted after a restart),
signalling the whole group, the failure reason a site may report, the requirement check, and
the command that runs a program inside user and mount namespaces.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from packaging.requirements import InvalidRequirement, Requirement

from fedsilo.deploy.errors import ValidationError
from fedsilo.deploy.jobspec import JobSpec

__all__ = [
    "JAIL",
    "JAIL_FAILED",
    "WRAPPER",
    "JobProcess",
    "check_requirements",
    "failure_reason",
    "jailed",
    "read_exit_code",
    "same_process",
    "signal_group",
]

WRAPPER = Path(__file__).with_name("_job_wrapper.py")
JAIL = Path(__file__).with_name("_job_jail.py")
JAIL_FAILED = 125  # the jail's exit code when it could not hide the directories
FAILURE_REASON_LIMIT = 1024


@dataclass
class JobProcess:
    """The job's wrapper process: a child of this agent, or one adopted after a restart."""

    pid: int
    popen: Any = None  # subprocess.Popen when this runner started it

    def running(self) -> bool:
        if self.popen is not None:
            return bool(self.popen.poll() is None)
        try:
            proc = psutil.Process(self.pid)
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def jailed(command: list[str], hidden: list[Path], spec: JobSpec, job_dir: Path,
            env: dict[str, str]) -> list[str]:
    """``command`` in new user and mount namespaces where ``hidden`` shows only the job's own."""
    keep = [job_dir.resolve(), *(p.resolve() for p in spec.channels.values()),
            Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
            *(Path(p).resolve() for p in env["PYTHONPATH"].split(os.pathsep) if p)]
    jail_spec = json.dumps({"hide": [str(p.resolve()) for p in hidden],
                            "keep": [str(p) for p in keep]})
    return ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
            sys.executable, str(JAIL), jail_spec, "--", *command]


def signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def same_process(pid: int, started: float | None) -> bool:
    try:
        proc = psutil.Process(pid)
        return (proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
                and started is not None and abs(proc.create_time() - started) < 0.5)
    except psutil.NoSuchProcess:
        return False


def read_exit_code(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["returncode"])
    except (OSError, ValueError, KeyError):
        return None


def failure_reason(job_dir: Path, exit_code: int | None) -> str:
    """SageMaker's FailureReason for a job that ended badly, naming the log the site keeps."""
    where = f" (the job's log at the site: jobs/{job_dir.name}/output.log)"
    return _reason(job_dir, exit_code)[:FAILURE_REASON_LIMIT - len(where)] + where


def _reason(job_dir: Path, exit_code: int | None) -> str:
    failure = job_dir / "output" / "failure"
    if failure.is_file():
        text = failure.read_text(errors="replace").strip()
        if text:
            return f"AlgorithmError: {text}"
    if exit_code is None:
        return "AlgorithmError: the program ended without an exit status"
    if exit_code == JAIL_FAILED:
        return ("InternalServerError: the site could not isolate the job (user and mount "
                "namespaces)")
    if exit_code < 0:
        return f"AlgorithmError: the program was killed by {signal.Signals(-exit_code).name}"
    return f"AlgorithmError: the program exited with code {exit_code}"


def check_requirements(path: Path) -> None:
    """Every requirement must already be met by the site's environment."""
    if not path.is_file():
        return
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise ValidationError(f"requirements.txt line {number}: {exc}") from exc
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ValidationError(f"requirements.txt asks for {requirement}, which the site "
                                  "does not have installed; the site installs packages, jobs "
                                  "do not") from exc
        if requirement.specifier and not requirement.specifier.contains(installed,
                                                                          prereleases=True):
            raise ValidationError(f"requirements.txt asks for {requirement}; the site has "
                                  f"{requirement.name} {installed}")

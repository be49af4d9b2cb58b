"""A job's processes and their outcome: start under the wrapper (and jail), signal, judge.

The pieces the runner needs around one job's process group, kept apart from its bookkeeping:
the handle on the wrapper process (a child of this agent, or one adopted after a restart),
signalling the whole group, the failure reason a site may report, the requirement check, and
the command that runs a program as the only one of its own PID namespace (so that it ends
whole) and, where the site isolates jobs, in a root filesystem of its own paths only.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import tomllib
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
    "containment_available",
    "contained",
    "failure_reason",
    "read_exit_code",
    "same_process",
    "signal_group",
]

WRAPPER = Path(__file__).with_name("_job_wrapper.py")
JAIL = Path(__file__).with_name("_job_jail.py")
JAIL_FAILED = 125  # the jail's exit code when it could not build the job's filesystem
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


# Read-only, besides the Python installation and the job's code and channels: what a Python
# program needs from the system (libraries, name resolution, CA bundles), nothing else of /etc.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/passwd", "/etc/group",
                "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf",
                "/etc/gai.conf", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
                "/etc/ssl", "/etc/ca-certificates", "/etc/localtime", "/etc/protocols",
                "/etc/services", "/etc/alternatives")
UNSHARE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child",
           "--mount", "--propagation", "private"]


@functools.lru_cache(maxsize=1)
def containment_available() -> bool:
    """Whether jobs can run in their own user, PID and mount namespaces on this machine."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*UNSHARE, "--mount-proc", "true"], capture_output=True,
                           timeout=30)
    return probe.returncode == 0


def contained(command: list[str], spec: JobSpec, job_dir: Path, env: dict[str, str], *,
              cwd: Path, isolate: bool) -> list[str]:
    """``command`` as the only program of a new PID namespace (see ``_job_jail``); with
    ``isolate``, in a root filesystem that holds only the job's own paths and the system's."""
    own = job_dir.resolve()
    read_only = [Path(p) for p in (*SYSTEM_PATHS, sys.prefix, sys.base_prefix, sys.exec_prefix,
                                   sys.base_exec_prefix, *env["PYTHONPATH"].split(os.pathsep))
                 if p and not Path(p).resolve().is_relative_to(own)]
    read_only += [p.resolve() for p in spec.channels.values()]
    if env.get("FEDSILO_CONTEXT"):
        read_only.append(Path(env["FEDSILO_CONTEXT"]).resolve())  # the job's Context file
    # A path that is a link is recreated as a link inside: its target must be there too.
    read_only += [p.resolve() for p in read_only if p.resolve() != p.absolute()]
    stage = job_dir / ".root"
    if isolate:
        stage.mkdir(exist_ok=True)
    jail_spec = json.dumps({
        "root": str(stage.resolve()) if isolate else None,
        "ro": sorted({str(p.absolute()) for p in read_only}),
        "rw": [str((job_dir / sub).resolve()) for sub in ("code", "model", "output")],
        "cwd": str(cwd.resolve())})
    return [*UNSHARE, sys.executable, str(JAIL), jail_spec, "--", *command]


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
    text = _written_by_the_job(job_dir / "output" / "failure", FAILURE_REASON_LIMIT).strip()
    if text:
        return f"AlgorithmError: {text}"
    if exit_code is None:
        return "AlgorithmError: the program ended without an exit status"
    if exit_code == JAIL_FAILED:
        return ("InternalServerError: the site could not isolate the job (user, PID and "
                "mount namespaces)")
    if exit_code < 0:
        return f"AlgorithmError: the program was killed by {signal.Signals(-exit_code).name}"
    if contained_signal(exit_code):  # the namespace's init reports a signal as 128 + N
        return (f"AlgorithmError: the program was killed by "
                f"{signal.Signals(exit_code - 128).name}")
    return f"AlgorithmError: the program exited with code {exit_code}"


def _written_by_the_job(path: Path, limit: int) -> str:
    """The start of a file the job wrote, read by the agent: a regular file only, never through
    a link (a job could point ``failure`` at the site's signing key, and the reason is sent to
    the caller)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return ""
        return handle.read(limit * 4).decode(errors="replace")[:limit]


def contained_signal(exit_code: int) -> bool:
    return 128 < exit_code < 128 + signal.NSIG and (exit_code - 128) in set(signal.Signals)


def check_requirements(code: Path) -> None:
    """Every requirement of the app in ``code`` must already be met by the site's environment:
    the lines of ``requirements.txt`` and the ``[project] dependencies`` of ``pyproject.toml``
    (a Flower app's), extras included (``fedsilo[xgboost]`` needs XGBoost)."""
    listed = code / "requirements.txt"
    if listed.is_file():
        for line in listed.read_text().splitlines():
            text = line.split("#", 1)[0].strip()
            if text:
                _check_requirement(text, "requirements.txt")
    project = code / "pyproject.toml"
    if project.is_file():
        try:
            declared = tomllib.loads(project.read_text()).get("project", {})
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError(f"pyproject.toml: {exc}") from exc
        for text in declared.get("dependencies", []):
            _check_requirement(str(text), "pyproject.toml")


def _check_requirement(text: str, where: str, extra: str | None = None) -> None:
    """``text`` installed at a version it allows; for each extra it names, what that extra
    needs too."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise ValidationError(f"{where}: {exc}") from exc
    environment = {"extra": extra} if extra is not None else None
    if requirement.marker is not None and not requirement.marker.evaluate(environment):
        return
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ValidationError(f"{where} asks for {requirement}, which the site does not have "
                              "installed; the site installs packages, jobs do not") from exc
    if requirement.specifier and not requirement.specifier.contains(installed,
                                                                      prereleases=True):
        raise ValidationError(f"{where} asks for {requirement}; the site has "
                              f"{requirement.name} {installed}")
    for name in sorted(requirement.extras):
        for needed in importlib.metadata.requires(requirement.name) or []:
            if Requirement(needed).marker is not None:  # only what the extra adds
                _check_requirement(needed, f"{where} ({requirement.name}[{name}])", name)

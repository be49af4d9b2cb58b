"""Runs a site's training jobs as script mode does, one process group per job.

For each job the runner unpacks the source tarball into ``jobs/<name>/code`` (safely), checks
the program's ``requirements.txt`` against the site's environment (a site installs packages;
a job may not), then starts ``python <program> --key value ...`` with the script-mode
variables: ``SM_CHANNEL_<NAME>`` per input channel, ``SM_CHANNELS``, ``SM_MODEL_DIR``,
``SM_OUTPUT_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_HPS`` (all hyperparameters as JSON) and
``SM_HP_<NAME>`` each, ``SM_USER_ARGS``, ``SM_MODULE_DIR``, ``SM_USER_ENTRY_POINT``,
``SM_CURRENT_HOST``, ``SM_HOSTS``, ``SM_NUM_CPUS``. Output goes to ``jobs/<name>/output.log``.

A watcher thread per job enforces ``MaxRuntimeInSeconds`` (the job ends Stopped, secondary
status ``MaxRuntimeExceeded``), carries out stop requests (SIGTERM to the process group, a
grace period, then SIGKILL to the group and any descendant left), and when the program ends
packs ``SM_MODEL_DIR`` into ``artifacts/<OutputPath>/<name>/output/model.tar.gz``; the
unpacked code is removed when the job ends. A failed
job's reason is what the program wrote to ``$SM_OUTPUT_DIR/failure`` (as SageMaker reads
``/opt/ml/output/failure``), else its exit code; the log is never copied into the reason.

The program runs under a small wrapper that records its exit code in a file, so when the
agent restarts while a job runs, the new runner adopts the process and still learns how it
ended. Where the machine allows user namespaces, the program is the only one of its own PID
namespace (``_job_jail`` is its init): when the program ends, or the job is stopped or timed
out, the namespace ends and with it every process the job started, daemons that called
``setsid`` included. A site isolates its jobs unless ``site.json`` says
``"isolate_jobs": false``: the job then sees a root filesystem holding only the system's
libraries, the Python installation, its channels (read-only) and its own code, model and
output directories; the site's keys, policy and other channels, other jobs, other sites and
any other file on the machine are not there. Where namespaces are not allowed, an isolating
site fails its jobs rather than run them unisolated, and a site that opted out falls back to
the process group (a ``setsid`` daemon can then outlive its job). A job's environment is
built from nothing: ``SM_*``, the request's ``Environment``, ``PATH``, ``PYTHONPATH``, ``LANG``
and ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

import fedsilo
from fedsilo.deploy.app_approval import check_app
from fedsilo.deploy.archive import extract_source, pack_directory
from fedsilo.deploy.errors import Conflict, DeployError, NotFound, ValidationError
from fedsilo.deploy.job_context import write_job_context
from fedsilo.deploy.job_process import (
    WRAPPER,
    JobProcess,
    check_requirements,
    contained,
    containment_available,
    failure_reason,
    read_exit_code,
    same_process,
    signal_group,
)
from fedsilo.deploy.jobspec import SUBMIT_DIRECTORY_KEY, JobSpec, normalised_name
from fedsilo.deploy.records import ACTIVE, JobRecord
from fedsilo.deploy.roles import job_arn
from fedsilo.deploy.site import SiteLayout

__all__ = ["JobRunner"]

SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


class JobRunner:
    """Creates, watches, stops and describes the jobs of one site; records survive restarts."""

    def __init__(self, site: SiteLayout, *, stop_grace_s: float | None = None,
                 poll_s: float = 0.1) -> None:
        self.site = site
        self.site_name = site.name
        config = site.config()
        self.isolate = bool(config.get("isolate_jobs", True))
        self.contained = containment_available()
        # Seconds between SIGTERM and SIGKILL: the argument, else site.json's, else 10.
        self.stop_grace_s = float(stop_grace_s if stop_grace_s is not None
                                  else config.get("stop_grace_s", 10.0))
        self.poll_s = poll_s
        self._lock = threading.RLock()
        self._records: dict[str, JobRecord] = {}
        self._processes: dict[str, JobProcess] = {}
        self._threads: dict[str, threading.Thread] = {}
        self.site.jobs.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.site.jobs.glob("*/record.json")):
            record = JobRecord.load(path)
            self._records[record.name] = record
            if record.status in ACTIVE:
                self._resume(record)

    # -- the actions -------------------------------------------------------------------------

    def create(self, spec: JobSpec) -> JobRecord:
        """Record the job and start it in the background; the name must be new at this site."""
        with self._lock:
            job_dir = self.site.jobs / spec.name
            if spec.name in self._records or job_dir.exists():
                raise Conflict(f"a training job named {spec.name!r} already exists at site "
                               f"{self.site_name}; job names are unique")
            job_dir.mkdir(parents=True)
            record = JobRecord(name=spec.name, arn=job_arn(self.site_name, spec.name),
                               request=spec.request, max_runtime_s=spec.max_runtime_s)
            record.advance("Starting", "Preparing the job")
            self._records[spec.name] = record
            self._save(record)
        self._watch(spec.name, target=lambda: self._run(spec))
        return record

    def describe(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._record(name).describe()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.summary() for r in sorted(self._records.values(),
                                                key=lambda r: r.creation_time)]

    def stop(self, name: str) -> dict[str, Any]:
        """Ask a running job to stop: Stopping now, Stopped once its processes are gone."""
        with self._lock:
            record = self._record(name)
            if record.status not in ACTIVE:
                raise Conflict(f"job {name} is {record.status}; only a job in progress can be "
                               "stopped")
            if record.status == "InProgress":
                record.stop_requested = True
                record.advance("Stopping", "Stopping the job", status="Stopping")
                self._save(record)
            return record.describe()

    def update(self, name: str, stopping_condition: dict[str, Any]) -> dict[str, Any]:
        """Change a running job's MaxRuntimeInSeconds (the one field that means anything here)."""
        value = stopping_condition.get("MaxRuntimeInSeconds")
        if not isinstance(value, int) or value < 1:
            raise ValidationError("UpdateTrainingJob takes StoppingCondition."
                                  "MaxRuntimeInSeconds, a positive integer")
        with self._lock:
            record = self._record(name)
            if record.status != "InProgress":
                raise Conflict(f"job {name} is {record.status}; only a job in progress can be "
                               "updated")
            record.max_runtime_s = value
            record.last_modified = time.time()
            self._save(record)
            return record.describe()

    def logs(self, name: str, start: int = 0, limit: int = 1000) -> dict[str, Any]:
        """Lines ``start`` to ``start + limit`` of the job's output, and the next start."""
        with self._lock:
            self._record(name)
        path = self.site.jobs / name / "output.log"
        lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        events = [{"message": line} for line in lines[start:start + limit]]
        return {"events": events, "nextForwardToken": str(start + len(events))}

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is in progress (tests, orderly shutdown)."""
        deadline = time.monotonic() + timeout
        while any(r.status in ACTIVE for r in list(self._records.values())):
            if time.monotonic() > deadline:
                return False
            time.sleep(self.poll_s)
        return True

    # -- the job's life ----------------------------------------------------------------------

    def _run(self, spec: JobSpec) -> None:
        job_dir = self.site.jobs / spec.name
        try:
            self._advance(spec.name, "Downloading", "Unpacking the source and checking "
                                                    "requirements")
            code_dir = job_dir / "code"
            # Checked again: the store could have changed since the job was accepted.
            check_app(self.site, spec.hyperparameters[SUBMIT_DIRECTORY_KEY], spec.source)
            extract_source(spec.source, code_dir)
            program = self.site.inside(code_dir, spec.program, "sagemaker_program")
            if not program.is_file():
                raise NotFound(f"the source tarball has no {spec.program!r}")
            check_requirements(code_dir)
            for sub in ("model", "output/data"):
                (job_dir / sub).mkdir(parents=True, exist_ok=True)
            env = self._environment(spec, job_dir, program)
            process = self._start(spec, job_dir, program, env)
        except DeployError as exc:
            self._finish(spec.name, "Failed", "Failed", f"ClientError: {exc}")
            return
        except OSError as exc:
            self._finish(spec.name, "Failed", "Failed", f"InternalServerError: {exc}")
            return
        self._monitor(spec.name, process)

    def _start(self, spec: JobSpec, job_dir: Path, program: Path,
               env: dict[str, str]) -> JobProcess:
        import subprocess

        program = Path(os.path.abspath(program))
        job_dir = Path(os.path.abspath(job_dir))
        command = [sys.executable, str(program), *spec.arguments]
        if self.contained:
            command = contained(command, spec, job_dir, env, cwd=program.parent,
                                isolate=self.isolate)
        elif self.isolate:
            raise OSError("the site isolates jobs, but this machine does not allow user, PID "
                          "and mount namespaces (unshare); the site may opt out in site.json")
        command = [sys.executable, str(WRAPPER), str(job_dir / "exit.json"), "--", *command]
        with self._lock:
            record = self._record(spec.name)
            if record.stop_requested:  # stopped while unpacking: never start
                raise _StoppedBeforeStart()
            with (job_dir / "output.log").open("ab") as log:
                popen = subprocess.Popen(command, cwd=program.parent, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            process = JobProcess(popen.pid, popen)
            self._processes[spec.name] = process
            record.pid = popen.pid
            record.process_started = psutil.Process(popen.pid).create_time()
            record.training_start = time.time()
            record.advance("Training", "Training the model with the program "
                                       f"{spec.program}")
            self._save(record)
        return process

    def _monitor(self, name: str, process: JobProcess) -> None:
        stop_reason = None
        while process.running():
            with self._lock:
                record = self._record(name)
                started = record.training_start or record.creation_time
                if record.stop_requested:
                    stop_reason = "Stopped"
                elif time.time() - started > record.max_runtime_s:
                    stop_reason = "MaxRuntimeExceeded"
                    record.advance("MaxRuntimeExceeded", f"The job ran longer than "
                                   f"MaxRuntimeInSeconds ({record.max_runtime_s} s)",
                                   status="Stopping")
                    self._save(record)
            if stop_reason is not None:
                self._terminate(process)
                break
            time.sleep(self.poll_s)
        if process.popen is not None:
            process.popen.wait()
        self._conclude(name, stop_reason)

    def _terminate(self, process: JobProcess) -> None:
        """SIGTERM to the job's process group, then SIGKILL to whatever is left after grace."""
        try:
            family = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        signal_group(process.pid, signal.SIGTERM)
        if not process.wait(self.stop_grace_s):
            signal_group(process.pid, signal.SIGKILL)
            process.wait(5.0)
        survivors = [p for p in family if p.is_running()]
        for proc in survivors:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _gone, alive = psutil.wait_procs(survivors, timeout=self.stop_grace_s)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass

    def _conclude(self, name: str, stop_reason: str | None) -> None:
        job_dir = self.site.jobs / name
        with self._lock:
            record = self._record(name)
            stop_reason = stop_reason or ("Stopped" if record.stop_requested else None)
        exit_code = read_exit_code(job_dir / "exit.json")
        with self._lock:
            record.exit_code = exit_code
            record.training_end = time.time()
        if stop_reason is not None:
            message = ("The job ran past MaxRuntimeInSeconds and was stopped"
                       if stop_reason == "MaxRuntimeExceeded" else "The job was stopped")
            self._upload(name)
            secondary = stop_reason if stop_reason == "MaxRuntimeExceeded" else "Stopped"
            self._finish(name, "Stopped", secondary, None, message)
        elif exit_code == 0:
            self._upload(name)
            self._finish(name, "Completed", "Completed", None, "Training job completed")
        else:
            self._finish(name, "Failed", "Failed", failure_reason(job_dir, exit_code))

    def _upload(self, name: str) -> None:
        with self._lock:
            record = self._record(name)
            record.advance("Uploading", "Packing the model directory into model.tar.gz")
            self._save(record)
            output_path = record.request["OutputDataConfig"]["OutputPath"]
        relative = Path(output_path) / name / "output" / "model.tar.gz"
        archive = self.site.inside(self.site.artifacts, str(relative), "OutputPath")
        pack_directory(self.site.jobs / name / "model", archive)
        with self._lock:
            record.model_artifacts = f"site://{self.site_name}/artifacts/{relative.as_posix()}"
            self._save(record)

    def _finish(self, name: str, status: str, secondary: str, reason: str | None,
                message: str | None = None) -> None:
        with self._lock:
            record = self._record(name)
            if status == "Failed" and record.stop_requested:
                status, secondary, reason = "Stopped", "Stopped", None
            record.failure_reason = reason
            if record.training_start is not None and record.training_end is None:
                record.training_end = time.time()
            record.advance(secondary, message or reason or status, status=status)
            self._processes.pop(name, None)
            self._save(record)
        # As a training container goes away with its job: the unpacked code is not kept (the
        # tarball stays in the code store; the record, log and outputs stay in the job's dir).
        shutil.rmtree(self.site.jobs / name / "code", ignore_errors=True)
        shutil.rmtree(self.site.jobs / name / ".root", ignore_errors=True)  # the jail's mount point

    # -- restart -----------------------------------------------------------------------------

    def _resume(self, record: JobRecord) -> None:
        """Pick up a job that was active when the previous agent stopped."""
        job_dir = self.site.jobs / record.name
        if record.pid is None:
            self._finish(record.name, "Failed", "Failed",
                         "InternalServerError: the site agent stopped before the job started")
            return
        process = JobProcess(record.pid)
        if same_process(record.pid, record.process_started):
            self._processes[record.name] = process
            self._watch(record.name, target=lambda: self._monitor(record.name, process))
        elif (job_dir / "exit.json").is_file():
            self._watch(record.name, target=lambda: self._conclude(record.name, None))
        else:
            self._finish(record.name, "Failed", "Failed", "InternalServerError: the job's "
                         "process ended while the site agent was down; its exit is unknown")

    # -- internals ---------------------------------------------------------------------------

    def _watch(self, name: str, target: Any) -> None:
        def run() -> None:
            try:
                target()
            except _StoppedBeforeStart:
                self._finish(name, "Stopped", "Stopped", None, "Stopped before it started")
            except Exception as exc:  # a job must end in a terminal state, whatever happens
                self._finish(name, "Failed", "Failed", f"InternalServerError: {exc}")

        thread = threading.Thread(target=run, name=f"job-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def _environment(self, spec: JobSpec, job_dir: Path, program: Path) -> dict[str, str]:
        """What SageMaker gives a training container, and nothing of the agent's own."""
        hps = spec.program_hyperparameters
        source_root = str(Path(fedsilo.__file__).resolve().parents[1])
        env = {"PATH": os.pathsep.join((str(Path(sys.executable).parent), *SYSTEM_PATH)),
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
        env.update(spec.environment)  # then the site's own values, which nothing overrides
        env.update({
            "SM_MODEL_DIR": str(job_dir / "model"),
            "SM_OUTPUT_DIR": str(job_dir / "output"),
            "SM_OUTPUT_DATA_DIR": str(job_dir / "output" / "data"),
            "SM_CHANNELS": json.dumps(sorted(spec.channels)),
            "SM_HPS": json.dumps(hps),
            "SM_USER_ARGS": json.dumps(spec.arguments),
            "SM_MODULE_DIR": str(program.parent),
            "SM_USER_ENTRY_POINT": spec.program,
            "SM_CURRENT_HOST": "algo-1",
            "SM_HOSTS": json.dumps(["algo-1"]),
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_TRAINING_JOB_NAME": spec.name,
            "FEDSILO_CONTEXT": str(write_job_context(self.site, spec, job_dir)),
            "PYTHONPATH": os.pathsep.join((str(program.parent), source_root)),
        })
        for channel, path in spec.channels.items():
            env[f"SM_CHANNEL_{normalised_name(channel).upper()}"] = str(path.resolve())
        for key, value in hps.items():
            env[f"SM_HP_{normalised_name(key).upper()}"] = value
        return env

    def _advance(self, name: str, secondary: str, message: str) -> None:
        with self._lock:
            record = self._record(name)
            record.advance(secondary, message)
            self._save(record)

    def _record(self, name: str) -> JobRecord:
        if name not in self._records:
            raise NotFound(f"no training job {name!r} at site {self.site_name}")
        return self._records[name]

    def _save(self, record: JobRecord) -> None:
        record.save(self.site.jobs / record.name / "record.json")


class _StoppedBeforeStart(Exception):
    """A stop request arrived while the job was still being prepared."""

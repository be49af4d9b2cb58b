"""The launcher interface: one job definition, a Popen-like handle on the running job."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.deploy.errors import DeployError, JobError

__all__ = ["FEDERATION_CHANNEL", "ROOT_CERTIFICATES_ENV", "TERMINAL", "JobDefinition",
           "JobHandle", "Launcher"]

TERMINAL = ("Completed", "Failed", "Stopped")
# How the federation CA reaches a job: never as a hyperparameter (one line each on SageMaker).
ROOT_CERTIFICATES_ENV = "FEDSILO_ROOT_CERTIFICATES"  # local sites: the PEM text
FEDERATION_CHANNEL = "federation"  # SageMaker: a channel holding ca.pem


@dataclass(frozen=True)
class JobDefinition:
    """What to run at a site, whatever runs it.

    ``source`` and ``channels`` are where the site keeps them: paths in the site's code store
    and channel directories for a local site, ``s3://`` URIs for SageMaker. ``output`` likewise.
    ``environment`` reaches the program as environment variables. ``root_certificates`` is
    the federation CA's PEM, which each launcher hands over its own way (``ca.pem`` in the
    ``federation`` channel, or the ``FEDSILO_ROOT_CERTIFICATES`` variable).
    ``volume_size_gb``, ``checkpoint_uri``, ``spot`` and ``max_wait_s`` (managed spot
    training: how long to wait for spot capacity and run, at least ``max_runtime_s``) and
    ``tags`` are SageMaker's; a local site ignores them.
    """

    name: str
    program: str
    source: str
    channels: dict[str, str]
    output: str
    execution_role_arn: str
    hyperparameters: dict[str, str] = field(default_factory=dict)
    max_runtime_s: int = 86400
    instance_type: str = "ml.m5.xlarge"
    training_image: str = "python"
    vpc_config: dict[str, Any] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    root_certificates: bytes | None = None
    volume_size_gb: int = 10
    checkpoint_uri: str | None = None
    spot: bool = False
    max_wait_s: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


LOG_TAIL_LINES = 15  # how much of a failed job's log the orchestrator shows


class JobHandle(ABC):
    """A launched job: ask its state, wait for its end, stop it."""

    def __init__(self, site: str, name: str, arn: str = "") -> None:
        self.site = site
        self.name = name
        self.arn = arn or name
        self.last_: dict[str, Any] = {}

    @abstractmethod
    def _describe(self) -> dict[str, Any]: ...

    @abstractmethod
    def stop(self) -> None:
        """Ask the site to stop the job (it ends Stopped after its grace period)."""

    def stop_command(self) -> str:
        """A command the job's owner can run to stop the job by hand."""
        return f"ask site {self.site} to stop job {self.name}"

    def describe(self) -> dict[str, Any]:
        """The job's DescribeTrainingJob answer (kept as ``last_``)."""
        self.last_ = self._describe()
        return self.last_

    def poll(self) -> str | None:
        """The final status once the job has ended, else None."""
        status = str(self.describe()["TrainingJobStatus"])
        return status if status in TERMINAL else None

    def wait(self, timeout: float, interval: float = 0.5) -> dict[str, Any]:
        """Wait for the job to end and return its description; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.site}: job {self.name} still "
                                   f"{self.last_.get('TrainingJobStatus')} after {timeout:.0f} s")
            time.sleep(interval)
        return self.last_

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str] | None:
        """The job log's last ``lines`` lines, or None where the site does not let us read it."""
        return None

    def check(self) -> None:
        """Raise JobError if the job, as last described, ended Failed or Stopped."""
        status = self.last_.get("TrainingJobStatus")
        if status in ("Failed", "Stopped"):
            reason = self.last_.get("FailureReason") or self.last_.get("SecondaryStatus", "")
            raise JobError(self.site, self.name, str(status), str(reason),
                           log_tail=self.log_tail() if status == "Failed" else None)


class Launcher(ABC):
    """Starts jobs at one site under a role assumed there."""

    site: str

    @abstractmethod
    def launch(self, definition: JobDefinition) -> JobHandle: ...

    def attach(self, name: str) -> JobHandle:
        """A handle on the job ``name`` launched earlier (a restarted orchestrator's)."""
        raise DeployError(f"{self.site}: this launcher cannot reattach to job {name}")

    def put_code(self, name: str, data: bytes) -> None:
        """Place an app archive into the site's code store as ``name``."""
        raise DeployError(f"{self.site}: this launcher cannot upload code; place the app "
                          "where the site's jobs read it and name it in the site's source")

    def close(self) -> None:  # noqa: B027 - most launchers hold nothing to release
        """Release connections; running jobs are not affected."""

    def fetch_model(self, description: dict[str, Any], destination: Path) -> Path | None:
        """Copy the job's ``model.tar.gz`` to ``destination``; None where the site keeps it."""
        return None

    def renew(self) -> None:  # noqa: B027 - a launcher whose session renews itself
        """Assume the role again now (when the site refused the current session)."""

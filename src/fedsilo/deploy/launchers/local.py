"""The local launcher: a site agent over HTTPS, reached with a role assumed there."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fedsilo.deploy.client import SiteClient, SiteSession
from fedsilo.deploy.errors import DeployError
from fedsilo.deploy.identity import Identity
from fedsilo.deploy.launchers.base import (
    LOG_TAIL_LINES,
    ROOT_CERTIFICATES_ENV,
    JobDefinition,
    JobHandle,
    Launcher,
)

__all__ = ["LocalLauncher", "LocalJob"]

RENEW_BEFORE_S = 60.0


class LocalLauncher(Launcher):
    """Launches on a site agent at ``endpoint`` whose TLS certificate ``ca`` vouches for."""

    def __init__(self, *, site: str, endpoint: str, ca: str | Path, role_arn: str,
                 identity: Identity, session_name: str = "fedsilo-federation",
                 duration_s: int = 3600, external_id: str | None = None) -> None:
        self.site = site
        self.external_id = external_id
        self.role_arn = role_arn
        self.identity = identity
        self.session_name = session_name
        self.duration_s = duration_s
        self.client = SiteClient(endpoint, ca, site=site)
        self._session: SiteSession | None = None
        self._renew_at = 0.0

    def session(self) -> SiteSession:
        """The current session, assuming the role again shortly before it expires."""
        if self._session is None or time.monotonic() > self._renew_at:
            self._session = self.client.assume_role(self.identity, self.role_arn,
                                                    self.session_name, self.duration_s,
                                                    external_id=self.external_id)
            self._renew_at = time.monotonic() + self.duration_s - RENEW_BEFORE_S
        return self._session

    def request(self, definition: JobDefinition) -> dict[str, Any]:
        """The CreateTrainingJob request a site agent takes for ``definition``."""
        request: dict[str, Any] = {
            "TrainingJobName": definition.name,
            "HyperParameters": {**definition.hyperparameters,
                                "sagemaker_program": definition.program,
                                "sagemaker_submit_directory": definition.source},
            "AlgorithmSpecification": {"TrainingImage": definition.training_image,
                                       "TrainingInputMode": "File"},
            "RoleArn": definition.execution_role_arn,
            "InputDataConfig": [{"ChannelName": name,
                                 "DataSource": {"SiteDataSource": {"Path": path}}}
                                for name, path in definition.channels.items()],
            "OutputDataConfig": {"OutputPath": definition.output},
            "ResourceConfig": {"InstanceType": "local", "InstanceCount": 1,
                               "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": definition.max_runtime_s},
        }
        environment = dict(definition.environment)
        if definition.root_certificates is not None:  # a site's limit is 4,096 characters
            environment[ROOT_CERTIFICATES_ENV] = definition.root_certificates.decode()
        if environment:
            request["Environment"] = environment
        return request

    def renew(self) -> None:
        self._session = None

    def launch(self, definition: JobDefinition) -> LocalJob:
        self.session().create_training_job(self.request(definition))
        return LocalJob(self, definition.name)

    def attach(self, name: str) -> LocalJob:
        return LocalJob(self, name)

    def put_code(self, name: str, data: bytes) -> None:
        """Upload through the agent (``code:PutCode``); the site stores it under its digest."""
        self.session().put_code(name, data)

    def close(self) -> None:
        self.client.close()


class LocalJob(JobHandle):
    def __init__(self, launcher: LocalLauncher, name: str) -> None:
        super().__init__(launcher.site, name)
        self.launcher = launcher

    def _describe(self) -> dict[str, Any]:
        return self.launcher.session().describe_training_job(self.name)

    def stop(self) -> None:
        self.launcher.session().stop_training_job(self.name)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str] | None:
        """The log's end through GetLogEvents, where the site's policy grants it."""
        collected: list[str] = []
        token = 0
        try:
            while True:
                page = self.launcher.session().get_log_events(self.name, start=token)
                events = page.get("events", [])
                collected = (collected + [str(e.get("message", "")) for e in events])[-lines:]
                following = int(page.get("nextForwardToken", token))
                if not events or following == token:
                    return collected
                token = following
        except (DeployError, ConnectionError, ValueError):
            return None

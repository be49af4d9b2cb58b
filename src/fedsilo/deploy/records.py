"""A job's record: its state as DescribeTrainingJob reports it, kept on disk as JSON.

Records are written atomically on every change (``jobs/<name>/record.json``), so an agent
that restarts reads back every job, finished or running, as it was.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["ACTIVE", "TERMINAL", "JobRecord"]

ACTIVE = ("InProgress", "Stopping")
TERMINAL = ("Completed", "Failed", "Stopped")


@dataclass
class JobRecord:
    """Everything the site knows about one job; :meth:`describe` is the public view."""

    name: str
    arn: str
    request: dict[str, Any]
    max_runtime_s: int
    status: str = "InProgress"
    secondary_status: str = "Starting"
    transitions: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    creation_time: float = field(default_factory=time.time)
    training_start: float | None = None
    training_end: float | None = None
    last_modified: float = field(default_factory=time.time)
    pid: int | None = None
    process_started: float | None = None
    stop_requested: bool = False
    exit_code: int | None = None
    model_artifacts: str | None = None

    def advance(self, secondary: str, message: str, status: str | None = None) -> None:
        """Move to the secondary status ``secondary`` (and ``status``), closing the last one."""
        now = time.time()
        if self.transitions and "EndTime" not in self.transitions[-1]:
            self.transitions[-1]["EndTime"] = _iso(now)
        self.transitions.append({"Status": secondary, "StartTime": _iso(now),
                                 "StatusMessage": message})
        self.secondary_status = secondary
        if status is not None:
            self.status = status
            if status in TERMINAL:
                self.transitions[-1]["EndTime"] = _iso(now)
        self.last_modified = now

    def describe(self) -> dict[str, Any]:
        """The record in DescribeTrainingJob's shape (what the agent may tell a caller)."""
        out: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary_status,
            "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
            "CreationTime": _iso(self.creation_time),
            "LastModifiedTime": _iso(self.last_modified),
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_runtime_s},
        }
        for key in ("HyperParameters", "AlgorithmSpecification", "RoleArn", "InputDataConfig",
                    "OutputDataConfig", "ResourceConfig"):
            if key in self.request:
                out[key] = self.request[key]
        if self.failure_reason is not None:
            out["FailureReason"] = self.failure_reason
        if self.training_start is not None:
            out["TrainingStartTime"] = _iso(self.training_start)
        if self.training_end is not None:
            out["TrainingEndTime"] = _iso(self.training_end)
            if self.training_start is not None:
                out["TrainingTimeInSeconds"] = int(self.training_end - self.training_start)
        if self.model_artifacts is not None:
            out["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifacts}
        return out

    def summary(self) -> dict[str, Any]:
        """ListTrainingJobs' entry for this job."""
        return {"TrainingJobName": self.name, "TrainingJobArn": self.arn,
                "TrainingJobStatus": self.status, "SecondaryStatus": self.secondary_status,
                "CreationTime": _iso(self.creation_time),
                "LastModifiedTime": _iso(self.last_modified)}

    def save(self, path: Path) -> None:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> JobRecord:
        return cls(**json.loads(path.read_text()))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")

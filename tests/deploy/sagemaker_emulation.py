"""SageMaker's side of a training job, emulated for jobs created on moto.

moto records a training job and calls it Completed at once; it runs nothing, has no
StopTrainingJob and writes no model. :class:`TrainingJobEmulator` does what the service does
with each CreateTrainingJob that fedsilo sends: it lays out ``/opt/ml`` under a directory of
the test (``hyperparameters.json``, ``inputdataconfig.json``, every channel copied from S3 into
``input/data/<channel>/``), sets the request's Environment, runs the image's ``train`` command
(``fedsilo-train``) as a process, then packs ``model/`` into ``model.tar.gz`` under
``S3OutputPath/<job>/output/`` or reports ``output/failure`` as the FailureReason.
DescribeTrainingJob answers carry the emulated status (InProgress until the model is
uploaded), and StopTrainingJob stops the process. It hooks the boto3 clients of the test
process, as aws_strict does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from fedsilo.deploy.archive import pack_directory

from .aws_strict import install_handlers

__all__ = ["EmulatedJob", "TrainingJobEmulator", "lay_out_opt_ml"]

TRAIN = str(Path(sys.executable).with_name("fedsilo-train"))


def lay_out_opt_ml(base: Path, hyperparameters: dict[str, str],
                   channels: dict[str, dict[str, bytes]]) -> Path:
    """``/opt/ml`` as SageMaker leaves it for the container, under ``base``."""
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text(json.dumps({
        name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
               "RecordWrapperType": "None"} for name in channels}))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"]}))
    for directory in ("model", "output"):  # the service provides both, empty
        (base / directory).mkdir(parents=True, exist_ok=True)
    for name, files in channels.items():
        for relative, data in files.items():
            path = base / "input" / "data" / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return base


@dataclass
class EmulatedJob:
    name: str
    request: dict[str, Any]
    base: Path
    status: str = "InProgress"
    secondary: str = "Starting"
    failure: str = ""
    process: subprocess.Popen[bytes] | None = None
    stop_asked: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


class TrainingJobEmulator:
    """Run each training job created through boto3 as SageMaker would (see the module)."""

    def __init__(self, root: Path, endpoint: str, credentials: dict[str, str],
                 region: str = "us-east-1") -> None:
        self.root = root
        self.endpoint = endpoint
        self.credentials = credentials
        self.region = region
        self.jobs: dict[str, EmulatedJob] = {}

    def install(self, monkeypatch: Any) -> TrainingJobEmulator:
        install_handlers(
            monkeypatch,
            ("provide-client-params.sagemaker.CreateTrainingJob", self._remember),
            ("after-call.sagemaker.CreateTrainingJob", self._start),
            ("after-call.sagemaker.DescribeTrainingJob", self._describe),
            ("before-call.sagemaker.StopTrainingJob", self._stop))
        return self

    def _s3(self) -> Any:
        return boto3.client("s3", region_name=self.region, endpoint_url=self.endpoint,
                            **self.credentials)

    def _remember(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["emulated_request"] = dict(params)

    def _start(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        if http_response.status_code >= 300:
            return
        request = context["emulated_request"]
        job = EmulatedJob(request["TrainingJobName"], request,
                          self.root / request["TrainingJobName"] / "opt" / "ml")
        self.jobs[job.name] = job
        threading.Thread(target=self._run, args=(job,), daemon=True).start()

    def _channel(self, uri: str) -> dict[str, bytes]:
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        s3 = self._s3()
        files = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix):].lstrip("/")
                files[relative] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return files

    def _run(self, job: EmulatedJob) -> None:
        try:
            channels = {c["ChannelName"]: self._channel(c["DataSource"]["S3DataSource"]["S3Uri"])
                        for c in job.request.get("InputDataConfig", [])}
            lay_out_opt_ml(job.base, job.request["HyperParameters"], channels)
            env = {**os.environ, **job.request.get("Environment", {}),
                   "SAGEMAKER_BASE_DIR": str(job.base), "AWS_ENDPOINT_URL": self.endpoint,
                   "AWS_DEFAULT_REGION": self.region,
                   "AWS_ACCESS_KEY_ID": self.credentials["aws_access_key_id"],
                   "AWS_SECRET_ACCESS_KEY": self.credentials["aws_secret_access_key"]}
            job.secondary = "Training"
            with (job.base.parent / "train.log").open("wb") as log:
                job.process = subprocess.Popen([TRAIN, "train"], env=env, stdout=log,
                                               stderr=subprocess.STDOUT)
                code = job.process.wait()
            if job.stop_asked.is_set():
                job.status = job.secondary = "Stopped"
            elif code != 0:
                failure = job.base / "output" / "failure"
                job.failure = failure.read_text() if failure.is_file() else f"exit {code}"
                job.status = job.secondary = "Failed"
            else:
                job.secondary = "Uploading"
                archive = pack_directory(job.base / "model", job.base.parent / "model.tar.gz")
                output = job.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
                bucket, _, prefix = output[len("s3://"):].partition("/")
                key = "/".join(p for p in (prefix, job.name, "output", "model.tar.gz") if p)
                self._s3().put_object(Bucket=bucket, Key=key, Body=archive.read_bytes())
                job.status = job.secondary = "Completed"
        except Exception as exc:  # the emulated service must end the job whatever happened
            job.failure = f"emulator: {type(exc).__name__}: {exc}"
            job.status = job.secondary = "Failed"
        finally:
            job.ended.set()

    def _describe(self, parsed: dict[str, Any], **_: Any) -> None:
        job = self.jobs.get(parsed.get("TrainingJobName", ""))
        if job is not None:
            parsed["TrainingJobStatus"] = job.status
            parsed["SecondaryStatus"] = job.secondary
            if job.failure:
                parsed["FailureReason"] = job.failure

    def _stop(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        name = json.loads(params["body"])["TrainingJobName"]
        job = self.jobs[name]
        if job.status == "InProgress":
            job.stop_asked.set()
            job.status = "Stopping"
            if job.process is not None:
                job.process.terminate()
        return AWSResponse(params["url"], 200, {}, None), {}

    def stop_all(self) -> None:
        """End every emulated job still running (the test's own clean-up)."""
        for job in self.jobs.values():
            if job.process is not None and job.process.poll() is None:
                job.process.kill()
            job.ended.wait(30)

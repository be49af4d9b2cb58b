"""The SageMaker launcher: the seed's calls through boto3, under a role in the data's account.

The launch role is assumed through :class:`AssumedRoleSession` (renewed before it expires, with
ExternalId, SourceIdentity and session tags); a SageMaker client made with it creates the
script-mode training job with the seed's request fields (HyperParameters with
``sagemaker_program`` and ``sagemaker_submit_directory``, AlgorithmSpecification, RoleArn,
InputDataConfig from S3, OutputDataConfig, ResourceConfig, VpcConfig, StoppingCondition) plus
Environment, CheckpointConfig, managed spot training and Tags where the site asks for them,
describes and stops it. botocore's errors are turned into the deployment layer's at this edge.

Code travels content-addressed: a ``source`` that is a file on this machine (the site
program's tarball today, an app archive tomorrow) is uploaded once to
``<code_prefix>/<sha256 of its bytes>/<file name>`` in the site's bucket and the job names that
object. S3 checks the upload against its SHA-256 (``ChecksumAlgorithm``); an object already
under that name is kept only when S3's checksum of it is the same digest, so the same bytes are
uploaded once and bytes planted under the name are replaced (a write after the job has read
its code is not prevented: whoever may write ``code/`` is trusted as far as the site's code
goes). An ``s3://`` source is the site's own upload, used as it is. The federation CA travels
the same way, as ``ca.pem`` alone under its digest, given to the job as the ``federation``
channel: a hyperparameter holds one line only, and a training job's environment value at
most 512 characters.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fedsilo.deploy.aws_session import AssumedRoleSession, AssumeRoleSettings, Clock
from fedsilo.deploy.errors import (
    AccessDenied,
    AuthenticationError,
    Conflict,
    DeployError,
    NotFound,
    ValidationError,
)
from fedsilo.deploy.launchers.base import (
    FEDERATION_CHANNEL,
    JobDefinition,
    JobHandle,
    Launcher,
)

__all__ = ["SageMakerLauncher", "SageMakerJob", "split_s3_uri"]

_ERRORS: dict[str, type[DeployError]] = {
    "AccessDenied": AccessDenied,
    "AccessDeniedException": AccessDenied,
    "InvalidClientTokenId": AuthenticationError,
    "ExpiredToken": AuthenticationError,
    "ExpiredTokenException": AuthenticationError,
    "ValidationException": ValidationError,
    "ResourceNotFound": NotFound,
    "NoSuchKey": NotFound,
    "404": NotFound,
    "403": AccessDenied,
    "ResourceInUse": Conflict,
}


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` as (bucket, key)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValidationError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


class SageMakerLauncher(Launcher):
    """Launches SageMaker training jobs in the account that owns the launch role.

    Parameters
    ----------
    site:
        The site's name (in messages and job names).
    role_arn:
        The launch role; ``assume`` gives the rest of the AssumeRole request.
    region, endpoint_url, base_credentials, clock:
        As :class:`AssumedRoleSession` takes them.
    code_prefix:
        ``s3://bucket/prefix`` where local code files are uploaded (content-addressed).
    kms_key_id:
        The site's KMS key: uploads, the job's volume and its model are encrypted with it.
    """

    def __init__(self, *, site: str, role_arn: str, region: str,
                 endpoint_url: str | None = None,
                 base_credentials: dict[str, str] | None = None,
                 assume: AssumeRoleSettings | None = None, code_prefix: str = "",
                 kms_key_id: str | None = None, clock: Clock | None = None) -> None:
        self.site = site
        self.role_arn = role_arn
        self.region = region
        self.endpoint_url = endpoint_url
        self.code_prefix = code_prefix.rstrip("/")
        self.kms_key_id = kms_key_id
        settings = assume or AssumeRoleSettings(role_arn)
        if settings.role_arn != role_arn:
            raise ValidationError(f"site {site}: the AssumeRole settings name "
                                  f"{settings.role_arn}, not the launch role {role_arn}")
        self.aws = AssumedRoleSession(settings, region=region, endpoint_url=endpoint_url,
                                      base_credentials=base_credentials, clock=clock)
        self.renew()

    @property
    def assumed_role_arn(self) -> str:
        return self.aws.assumed_role_arn_

    def renew(self) -> None:
        _translate(self.site, self.aws.assume)
        self.client = self.aws.client("sagemaker")
        self.s3 = self.aws.client("s3")

    def request(self, definition: JobDefinition) -> dict[str, Any]:
        """The seed's create_training_job arguments for ``definition``."""
        request: dict[str, Any] = {
            "TrainingJobName": definition.name,
            "HyperParameters": {**definition.hyperparameters,
                                "sagemaker_program": definition.program,
                                "sagemaker_submit_directory": definition.source},
            "AlgorithmSpecification": {"TrainingImage": definition.training_image,
                                       "TrainingInputMode": "File"},
            "RoleArn": definition.execution_role_arn,
            "InputDataConfig": [{"ChannelName": name, "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated"}}}
                for name, uri in definition.channels.items()],
            "OutputDataConfig": {"S3OutputPath": definition.output},
            "ResourceConfig": {"InstanceType": definition.instance_type, "InstanceCount": 1,
                               "VolumeSizeInGB": definition.volume_size_gb},
            "StoppingCondition": {"MaxRuntimeInSeconds": definition.max_runtime_s},
        }
        if definition.vpc_config:
            request["VpcConfig"] = definition.vpc_config
        if definition.environment:
            request["Environment"] = dict(definition.environment)
        if definition.checkpoint_uri:
            request["CheckpointConfig"] = {"S3Uri": definition.checkpoint_uri}
        if definition.spot:
            request["EnableManagedSpotTraining"] = True
            request["StoppingCondition"]["MaxWaitTimeInSeconds"] = (
                definition.max_wait_s or definition.max_runtime_s)
        if self.kms_key_id:
            request["OutputDataConfig"]["KmsKeyId"] = self.kms_key_id
            request["ResourceConfig"]["VolumeKmsKeyId"] = self.kms_key_id
        if definition.tags:
            request["Tags"] = [{"Key": k, "Value": v} for k, v in definition.tags.items()]
        return request

    def stage(self, name: str, data: bytes) -> str:
        """Upload ``data`` to ``<code_prefix>/<sha256>/<name>`` unless there; return its URI."""
        if not self.code_prefix:
            raise ValidationError(f"site {self.site}: {name} must be uploaded to the site's "
                                  "bucket: set the site's code_prefix (s3://bucket/prefix)")
        digest = hashlib.sha256(data)
        uri = f"{self.code_prefix}/{digest.hexdigest()}/{name}"
        bucket, key = split_s3_uri(uri)
        checksum = base64.b64encode(digest.digest()).decode()
        try:
            found = _translate(self.site, lambda: self.s3.head_object(
                Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
        except (NotFound, AccessDenied):  # without s3:ListBucket a missing key reads 403
            found = {}
        if found.get("ChecksumSHA256") != checksum:  # absent, or other bytes under the name
            encryption = ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
                          if self.kms_key_id else {})
            _translate(self.site, lambda: self.s3.put_object(
                Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256", **encryption))
        return uri

    def close(self) -> None:
        self.client.close()
        self.s3.close()

    def launch(self, definition: JobDefinition) -> SageMakerJob:
        if not definition.source.startswith("s3://"):
            path = Path(definition.source)
            definition = replace(definition, source=self.stage(path.name, path.read_bytes()))
        if definition.root_certificates is not None:  # a channel: any length, KMS if asked
            ca = self.stage("ca.pem", definition.root_certificates)
            definition = replace(definition, channels={
                **definition.channels, FEDERATION_CHANNEL: ca.rpartition("/")[0] + "/"})
        request = self.request(definition)
        answer = _translate(self.site, lambda: self.client.create_training_job(**request))
        return SageMakerJob(self, definition.name, str(answer.get("TrainingJobArn", "")))

    def fetch_model(self, description: dict[str, Any], destination: Path) -> Path:
        """Fetch the job's ``model.tar.gz`` (from its description) to ``destination``."""
        uri = description.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        if not uri:
            raise NotFound(f"site {self.site}: job {description.get('TrainingJobName')} "
                           "has no model artifact")
        bucket, key = split_s3_uri(uri)
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".partial")
        _translate(self.site, lambda: self.s3.download_file(bucket, key, str(partial)))
        partial.replace(destination)
        return destination

    def attach(self, name: str) -> SageMakerJob:
        return SageMakerJob(self, name)


class SageMakerJob(JobHandle):
    def __init__(self, launcher: SageMakerLauncher, name: str, arn: str = "") -> None:
        super().__init__(launcher.site, name, arn)
        self.launcher = launcher

    def _describe(self) -> dict[str, Any]:
        return dict(_translate(self.site, lambda: self.launcher.client.describe_training_job(
            TrainingJobName=self.name)))

    def stop(self) -> None:
        _translate(self.site, lambda: self.launcher.client.stop_training_job(
            TrainingJobName=self.name))

    def stop_command(self) -> str:
        return (f"aws sagemaker stop-training-job --region {self.launcher.region} "
                f"--training-job-name {self.name}")


def _translate(site: str, call: Any) -> Any:
    """Run a boto3 call; raise the deployment layer's error for botocore's."""
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    try:
        return call()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        kind = _ERRORS.get(code, DeployError)
        raise kind(f"site {site}: {exc.operation_name} failed: {code}: "
                   f"{error.get('Message', exc)}") from exc
    except ParamValidationError as exc:
        raise ValidationError(f"site {site}: {exc}") from exc
    except BotoCoreError as exc:
        raise DeployError(f"site {site}: {exc}") from exc

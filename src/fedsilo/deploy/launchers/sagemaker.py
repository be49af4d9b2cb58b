"""The SageMaker launcher: the seed's calls through boto3, under a role in the data's account.

``sts.assume_role(RoleArn=..., RoleSessionName=...)`` gives temporary credentials; a SageMaker
client made with them creates the script-mode training job with the seed's request fields
(HyperParameters with ``sagemaker_program`` and ``sagemaker_submit_directory``,
AlgorithmSpecification, RoleArn, InputDataConfig from S3, OutputDataConfig, ResourceConfig,
VpcConfig, StoppingCondition), describes and stops it. botocore's errors are turned into the
deployment layer's at this edge. ``endpoint_url`` points both clients elsewhere (a test server).
"""

from __future__ import annotations

from typing import Any

from fedsilo.deploy.errors import (
    AccessDenied,
    AuthenticationError,
    Conflict,
    DeployError,
    NotFound,
    ValidationError,
)
from fedsilo.deploy.launchers.base import JobDefinition, JobHandle, Launcher

__all__ = ["SageMakerLauncher", "SageMakerJob"]

_ERRORS: dict[str, type[DeployError]] = {
    "AccessDenied": AccessDenied,
    "AccessDeniedException": AccessDenied,
    "InvalidClientTokenId": AuthenticationError,
    "ExpiredToken": AuthenticationError,
    "ExpiredTokenException": AuthenticationError,
    "ValidationException": ValidationError,
    "ResourceNotFound": NotFound,
    "ResourceInUse": Conflict,
}


class SageMakerLauncher(Launcher):
    """Launches SageMaker training jobs in the account that owns ``role_arn``."""

    def __init__(self, *, site: str, role_arn: str, region: str,
                 session_name: str = "fedsilo-federation", endpoint_url: str | None = None,
                 base_credentials: dict[str, str] | None = None) -> None:
        import boto3

        self.site = site
        self.role_arn = role_arn
        self.region = region
        self.endpoint_url = endpoint_url
        sts = boto3.client("sts", region_name=region, endpoint_url=endpoint_url,
                           **(base_credentials or {}))
        answer = _translate(self.site, lambda: sts.assume_role(
            RoleArn=role_arn, RoleSessionName=session_name))
        credentials = answer["Credentials"]
        self.assumed_role_arn = answer["AssumedRoleUser"]["Arn"]
        self.client = boto3.client(
            "sagemaker", region_name=region, endpoint_url=endpoint_url,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

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
                               "VolumeSizeInGB": 10},
            "StoppingCondition": {"MaxRuntimeInSeconds": definition.max_runtime_s},
        }
        if definition.vpc_config:
            request["VpcConfig"] = definition.vpc_config
        return request

    def close(self) -> None:
        self.client.close()

    def launch(self, definition: JobDefinition) -> SageMakerJob:
        request = self.request(definition)
        _translate(self.site, lambda: self.client.create_training_job(**request))
        return SageMakerJob(self, definition.name)

    def attach(self, name: str) -> SageMakerJob:
        return SageMakerJob(self, name)


class SageMakerJob(JobHandle):
    def __init__(self, launcher: SageMakerLauncher, name: str) -> None:
        super().__init__(launcher.site, name)
        self.launcher = launcher

    def _describe(self) -> dict[str, Any]:
        return dict(_translate(self.site, lambda: self.launcher.client.describe_training_job(
            TrainingJobName=self.name)))

    def stop(self) -> None:
        _translate(self.site, lambda: self.launcher.client.stop_training_job(
            TrainingJobName=self.name))


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

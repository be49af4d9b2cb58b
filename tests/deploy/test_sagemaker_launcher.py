"""The SageMaker launcher against moto's server mode: STS, S3, create and describe.

moto records training jobs without running them (a job is Completed the moment it is
created) and does not implement StopTrainingJob; what only a real account shows is listed in
docs/deployment.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
from pathlib import Path

import boto3
import pytest

from fedsilo.deploy.errors import DeployError, ValidationError
from fedsilo.deploy.launchers import JobDefinition, SageMakerLauncher
from fedsilo.deploy.launchers.sagemaker import SageMakerJob

from .aws_strict import StrictRequests
from .conftest import PROGRAMS, write_tarball

pytestmark = pytest.mark.slow

CLIENT_ACCOUNT = "111122223333"
LAUNCH_ROLE = f"arn:aws:iam::{CLIENT_ACCOUNT}:role/FL-kickoff-client-job"
EXECUTION_ROLE = f"arn:aws:iam::{CLIENT_ACCOUNT}:role/service-role/AmazonSageMaker-ExecutionRole-1"
BASE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"


def _client_account_buckets(endpoint: str) -> tuple[str, str]:
    """The client account's code and data, uploaded to S3 as the seed lays them out."""
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint, **BASE)
    s3.create_bucket(Bucket="client-code")
    s3.create_bucket(Bucket="client-data")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = PROGRAMS["train.py"].encode()
        info = tarfile.TarInfo("client.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket="client-code", Key="client_code/source.tar.gz",
                  Body=buffer.getvalue())
    s3.put_object(Bucket="client-data", Key="data_prep/train.csv", Body=b"a,b\n1,0\n")
    return ("s3://client-code/client_code/source.tar.gz", "s3://client-data/data_prep/")


def test_assume_role_then_create_and_describe_in_the_clients_account(
        moto_endpoint: str) -> None:
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_endpoint, **BASE)
    iam.create_role(RoleName="FL-kickoff-client-job", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "sts:AssumeRole", "Condition": {}}]}))
    source, data = _client_account_buckets(moto_endpoint)

    launcher = SageMakerLauncher(site="client-a", role_arn=LAUNCH_ROLE, region=REGION,
                                 endpoint_url=moto_endpoint, base_credentials=BASE)
    assert launcher.assumed_role_arn.startswith(
        f"arn:aws:sts::{CLIENT_ACCOUNT}:assumed-role/FL-kickoff-client-job/")
    definition = JobDefinition(
        name="fl-client-a-1", program="client.py", source=source, channels={"train": data},
        output="s3://client-artifacts/client_artifact/", execution_role_arn=EXECUTION_ROLE,
        hyperparameters={"penalty": "l2", "max-iter": "10", "server-address": "10.0.0.5:8080"},
        max_runtime_s=86400, training_image="sklearn-image:1.2-1",
        vpc_config={"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]})
    job = launcher.launch(definition)

    described = job.describe()
    assert described["TrainingJobName"] == "fl-client-a-1"
    assert described["TrainingJobArn"].split(":")[4] == CLIENT_ACCOUNT  # the data's account
    assert described["RoleArn"] == EXECUTION_ROLE
    assert described["HyperParameters"] == {
        "penalty": "l2", "max-iter": "10", "server-address": "10.0.0.5:8080",
        "sagemaker_program": "client.py", "sagemaker_submit_directory": source}
    assert described["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == data
    assert described["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert job.wait(timeout=10)["TrainingJobStatus"] == "Completed"  # moto: at once

    # The server account's own SageMaker sees no job: it was created in the client account.
    own = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_endpoint, **BASE)
    assert own.list_training_jobs()["TrainingJobSummaries"] == []

    with pytest.raises(ValidationError, match="client-a: DescribeTrainingJob failed"):
        SageMakerJob(launcher, "fl-client-a-missing").describe()


def test_botocore_errors_become_deploy_errors(moto_endpoint: str,
                                             strict_aws: StrictRequests) -> None:
    launcher = SageMakerLauncher(site="client-a", role_arn=LAUNCH_ROLE, region=REGION,
                                 endpoint_url=moto_endpoint, base_credentials=BASE)
    definition = JobDefinition(name="fl-client-a-0", program="client.py", source="s3://x/y",
                               channels={}, output="s3://x/", execution_role_arn=EXECUTION_ROLE)
    with pytest.raises(ValidationError, match="(?s)client-a: .*InputDataConfig"):
        launcher.launch(definition)  # the service checks the request against the API's shapes
    assert strict_aws.violations == [
        "CreateTrainingJob.InputDataConfig (items): 0 is below the minimum 1"]
    strict_aws.violations.clear()
    job = launcher.launch(JobDefinition(
        name="fl-client-a-2", program="client.py", source="s3://x/y",
        channels={"train": "s3://x/train/"},
        output="s3://x/", execution_role_arn=EXECUTION_ROLE))
    with pytest.raises(DeployError, match="StopTrainingJob"):  # moto has no StopTrainingJob
        job.stop()


def test_a_sagemaker_site_of_federation_toml_gets_the_seeds_request(
        moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        strict_aws: StrictRequests) -> None:
    import dataclasses

    import fedsilo.examples.fraud as fraud
    from fedsilo.deploy.federation_config import load_federation_config
    from fedsilo.deploy.identity import Identity, generate_signing_key
    from fedsilo.deploy.orchestrator import job_definition, make_launcher

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    config = load_federation_config(Path(fraud.__file__).parent / "federation.toml")
    tarball = write_tarball(tmp_path / "source.tar.gz", {"client.py": PROGRAMS["train.py"]})
    bucket = f"site3-code-{secrets.token_hex(4)}"  # moto's state lasts the session
    site = dataclasses.replace(config.sites[2], endpoint_url=moto_endpoint, source=str(tarball),
                               code_prefix=f"s3://{bucket}/code")
    assert site.launcher == "sagemaker" and site.external_id
    launcher = make_launcher(site, Identity(generate_signing_key()))
    launcher.s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    definition = job_definition(site, "20260101", "fl.example.org:8080", ca, config)
    described = launcher.launch(definition).describe()
    assert described["TrainingJobArn"].split(":")[4] == "111122223333"
    assert described["HyperParameters"]["server-address"] == "fl.example.org:8080"
    assert all("\n" not in v for v in described["HyperParameters"].values())
    assert described["InputDataConfig"][-1]["ChannelName"] == "federation"  # holds ca.pem
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    staged = f"{site.code_prefix}/{digest}/source.tar.gz"
    assert described["HyperParameters"]["sagemaker_submit_directory"] == staged
    assert described["AlgorithmSpecification"]["TrainingImage"] == site.training_image
    [assumed] = strict_aws.of("AssumeRole")
    assert assumed["ExternalId"] == site.external_id
    assert assumed["SourceIdentity"] == site.source_identity
    assert assumed["Tags"] == [{"Key": "federation", "Value": "fraud"}]
    assert described["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert described["OutputDataConfig"]["S3OutputPath"] == site.output


@pytest.mark.parametrize("download", [True, False])
def test_a_sites_model_is_downloaded_unless_the_site_keeps_it(
        moto_endpoint: str, tmp_path: Path, download: bool) -> None:
    import dataclasses

    import fedsilo.examples.fraud as fraud
    from fedsilo.deploy.federation_config import load_federation_config
    from fedsilo.deploy.orchestrator import _fetch_models

    config = dataclasses.replace(
        load_federation_config(Path(fraud.__file__).parent / "federation.toml"),
        output=tmp_path / "run")
    site = dataclasses.replace(config.sites[2], download_model=download)
    config = dataclasses.replace(config, sites=(site,))
    launcher = SageMakerLauncher(site="site3", role_arn=site.role, region=REGION,
                                 endpoint_url=moto_endpoint, base_credentials=BASE)
    bucket = f"site3-output-{secrets.token_hex(4)}"
    launcher.s3.create_bucket(Bucket=bucket)
    launcher.s3.put_object(Bucket=bucket, Key="output/fl-site3-1/output/model.tar.gz",
                           Body=b"packed model")
    job = {"TrainingJobName": "fl-site3-1", "TrainingJobStatus": "Completed", "ModelArtifacts": {
        "S3ModelArtifacts": f"s3://{bucket}/output/fl-site3-1/output/model.tar.gz"}}
    files = _fetch_models(config, {"site3": launcher}, {"site3": job})
    target = tmp_path / "run" / "sites" / "site3" / "model.tar.gz"
    if download:
        assert files == {"site3": str(target)}
        assert target.read_bytes() == b"packed model"
    else:
        assert files == {} and not target.exists()
    failed = {**job, "TrainingJobStatus": "Failed"}
    assert _fetch_models(config, {"site3": launcher}, {"site3": failed}) == {}
    missing = {**job, "ModelArtifacts": {"S3ModelArtifacts": f"s3://{bucket}/output/none.tar.gz"}}
    assert _fetch_models(config, {"site3": launcher}, {"site3": missing}) == {}  # logged

"""The requests fedsilo sends to AWS, checked as the services read them (aws_strict).

moto and botocore's client-side checks accept a multi-line hyperparameter; the service's
pattern ``.*``, matched against the whole value, does not. These tests show the strict check
refuses what the service refuses, and that the federation's requests pass it.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

import boto3
import botocore.session
import pytest

from fedsilo.deploy.certs import create_ca
from fedsilo.deploy.federation_config import SiteConfig, load_federation_config
from fedsilo.deploy.launchers import JobDefinition, SageMakerLauncher
from fedsilo.deploy.orchestrator import job_definition

from .aws_strict import StrictRequests, check_request
from .conftest import PROGRAMS, write_tarball

ACCOUNT = "111122223333"
LAUNCH_ROLE = f"arn:aws:iam::{ACCOUNT}:role/FL-kickoff-client-job"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/FL-execution-site3"
BASE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")


def _request(**changes: object) -> dict[str, object]:
    request: dict[str, object] = {
        "TrainingJobName": "fl-site3-1", "RoleArn": EXECUTION_ROLE,
        "HyperParameters": {"server-address": "fl.example.org:8080"},
        "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://b/output/"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                           "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600}}
    request.update(changes)
    return request


CA_PEM = create_ca("federation").certificate_pem.decode()


@pytest.mark.parametrize(("changes", "problem"), [
    ({"HyperParameters": {"root-certificates": CA_PEM}}, "does not match '.*'"),
    ({"HyperParameters": {"note": "one line -----BEGIN"}}, "a multi-line or PEM value"),
    ({"TrainingJobName": "fl_site3"}, "TrainingJobName: 'fl_site3' does not match"),
    ({"TrainingJobName": "f" * 64}, "above the maximum 63"),
    ({"AlgorithmSpecification": {"TrainingImage": "i", "TrainingInputMode": "Files"}},
     "'Files' is not one of"),
    ({"Environment": {"CA": "x" * 5000}}, "5000 is above the maximum"),
    ({"Environment": {"1CA": "x"}}, "key '1CA'"),
    ({"RoleArn": "arn:aws:iam::1111:role/x"}, "RoleArn: 'arn:aws:iam::1111:role/x' does not"),
    ({"StoppingCondition": {"MaxRuntimeInSeconds": 0}}, "0 is below the minimum 1"),
    ({"Environment": {"CA": CA_PEM}}, "above the maximum 512"),  # why the CA is a channel
])
def test_the_strict_check_refuses_what_the_service_refuses(changes: dict[str, object],
                                                           problem: str) -> None:
    problems = check_request(SAGEMAKER.operation_model("CreateTrainingJob"), _request(**changes))
    assert any(problem in p for p in problems), problems


def test_the_strict_check_takes_a_valid_request() -> None:
    request = _request(Environment={"NOTE": "two\nlines"})  # Environment's pattern: [\S\s]*
    assert check_request(SAGEMAKER.operation_model("CreateTrainingJob"), request) == []
    sts = botocore.session.get_session().get_service_model("sts")
    assume = {"RoleArn": LAUNCH_ROLE, "RoleSessionName": "fedsilo-federation",
              "ExternalId": "fraud-federation-7f3c9a", "SourceIdentity": "operator@example",
              "Tags": [{"Key": "federation", "Value": "fraud"}], "DurationSeconds": 3600}
    assert check_request(sts.operation_model("AssumeRole"), assume) == []
    assume["ExternalId"] = "has spaces"
    assert check_request(sts.operation_model("AssumeRole"), assume) != []


def test_no_request_of_a_full_sagemaker_launch_breaks_the_service_model(
        moto_endpoint: str, tmp_path: Path, strict_aws: StrictRequests) -> None:
    import fedsilo.examples.fraud as fraud

    config = load_federation_config(Path(fraud.__file__).parent / "federation.toml")
    site: SiteConfig = config.sites[2]
    tarball = write_tarball(tmp_path / "source.tar.gz", {"client.py": PROGRAMS["train.py"]})
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint, **BASE)
    bucket = f"site3-{secrets.token_hex(4)}"  # moto's state lasts the test session
    s3.create_bucket(Bucket=bucket)
    launcher = SageMakerLauncher(site="site3", role_arn=LAUNCH_ROLE, region="us-east-1",
                                 endpoint_url=moto_endpoint, base_credentials=BASE,
                                 code_prefix=f"s3://{bucket}/code")
    definition = job_definition(site, "20260101120000-ab12", "fl.example.org:8080",
                                CA_PEM.encode(), config)
    definition = dataclasses.replace(
        definition, source=str(tarball), spot=True, max_wait_s=10800,
        checkpoint_uri=f"s3://{bucket}/checkpoints/", tags={"federation": "fraud"},
        volume_size_gb=30)
    job = launcher.launch(definition)
    job.describe()
    launcher.launch(dataclasses.replace(definition, name="fl-site3-second"))  # same code again

    assert strict_aws.violations == []
    operations = strict_aws.operations("sagemaker") + strict_aws.operations("s3")
    assert operations.count("CreateTrainingJob") == 2 and "DescribeTrainingJob" in operations
    created = strict_aws.of("CreateTrainingJob")[0]
    assert all("\n" not in v and "BEGIN" not in v for v in created["HyperParameters"].values())
    federation = created["InputDataConfig"][-1]
    assert federation["ChannelName"] == "federation"
    ca_uri = federation["DataSource"]["S3DataSource"]["S3Uri"] + "ca.pem"
    ca_key = ca_uri.split("/", 3)[3]
    assert s3.get_object(Bucket=bucket, Key=ca_key)["Body"].read().decode() == CA_PEM
    assert operations.count("PutObject") == 2  # the code and the CA, once each
    assert created["EnableManagedSpotTraining"] is True
    assert created["StoppingCondition"] == {"MaxRuntimeInSeconds": site.max_runtime,
                                            "MaxWaitTimeInSeconds": 10800}
    assert created["CheckpointConfig"] == {"S3Uri": f"s3://{bucket}/checkpoints/"}
    assert created["ResourceConfig"]["VolumeSizeInGB"] == 30
    assert created["VpcConfig"] == site.vpc_config


def test_a_local_site_gets_the_ca_in_its_environment_too() -> None:
    from fedsilo.deploy.launchers.local import LocalLauncher

    definition = JobDefinition(name="fl-site1-1", program="client.py", source="fraud/s.tar.gz",
                               channels={"train": "train"}, output="fl",
                               execution_role_arn="arn:fedsilo:iam::site1:role/x",
                               root_certificates=CA_PEM.encode())
    request = LocalLauncher.request(None, definition)  # type: ignore[arg-type]
    assert request["Environment"] == {"FEDSILO_ROOT_CERTIFICATES": CA_PEM}
    assert "root-certificates" not in request["HyperParameters"]


def test_bytes_planted_under_a_code_digest_are_replaced(
        moto_endpoint: str, tmp_path: Path, strict_aws: StrictRequests) -> None:
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint, **BASE)
    bucket = f"site3-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    launcher = SageMakerLauncher(site="site3", role_arn=LAUNCH_ROLE, region="us-east-1",
                                 endpoint_url=moto_endpoint, base_credentials=BASE,
                                 code_prefix=f"s3://{bucket}/code")
    honest = b"the federation's program"
    uri = launcher.stage("source.tar.gz", honest)
    key = uri.split("/", 3)[3]
    s3.put_object(Bucket=bucket, Key=key, Body=b"someone else's program")  # planted
    assert launcher.stage("source.tar.gz", honest) == uri
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == honest
    launcher.stage("source.tar.gz", honest)  # intact now: not uploaded a third time
    assert strict_aws.operations("s3").count("PutObject") == 1 + 1 + 1  # planted, two stages

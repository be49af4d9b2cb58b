"""``fedsilo aws templates``: lint-clean CloudFormation, deployed into moto, used by a federation.

The data owner's stack goes into the owner's account and the server's stack into the
federation's; the launcher then assumes the very launch role the stack made (its trust policy
enforced by aws_emulation's gate, since moto does not), creates a job that runs as the stack's
execution role on the stack's bucket, polls it and stops it (run by sagemaker_emulation, since
moto neither runs nor stops jobs).
"""

from __future__ import annotations

import ast
import json
import secrets
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint
from typer.testing import CliRunner

from fedsilo.cli.main import app
from fedsilo.deploy.aws_session import AssumeRoleSettings
from fedsilo.deploy.aws_templates import TEMPLATE_FILES, data_owner_template, server_template
from fedsilo.deploy.errors import AccessDenied
from fedsilo.deploy.launchers import JobDefinition, SageMakerLauncher

from .aws_emulation import TrustPolicyGate
from .aws_strict import StrictRequests
from .conftest import PROGRAMS, wait_for, write_tarball
from .sagemaker_emulation import TrainingJobEmulator

OWNER = "111122223333"
CALLER = "123456789012"
BASE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"
EXTERNAL_ID = "fraud-federation-7f3c9a"
# The IAM action each request of the launcher needs (S3's HeadObject is s3:GetObject).
ACTIONS = {"CreateTrainingJob": "sagemaker:CreateTrainingJob",
           "DescribeTrainingJob": "sagemaker:DescribeTrainingJob",
           "StopTrainingJob": "sagemaker:StopTrainingJob", "HeadObject": "s3:GetObject",
           "PutObject": "s3:PutObject", "GetObject": "s3:GetObject"}


@pytest.mark.parametrize("template", [data_owner_template, server_template])
def test_the_templates_pass_cfn_lint(template: Any) -> None:
    matches = lint(json.dumps(template()), config=ManualArgs(regions=[REGION]))
    assert [str(m) for m in matches] == []


def test_the_command_writes_both_templates(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["aws", "templates", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == sorted(TEMPLATE_FILES)
    written = json.loads((tmp_path / "t" / "data-owner.json").read_text())
    assert written == data_owner_template()


def _account(endpoint: str, account: str) -> dict[str, str]:
    """Credentials in ``account`` (moto: any role there may be assumed)."""
    sts = boto3.client("sts", region_name=REGION, endpoint_url=endpoint, **BASE)
    found = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/admin",
                            RoleSessionName="stack-admin")["Credentials"]
    return {"aws_access_key_id": found["AccessKeyId"],
            "aws_secret_access_key": found["SecretAccessKey"],
            "aws_session_token": found["SessionToken"]}


def _deploy(endpoint: str, credentials: dict[str, str], name: str, template: dict[str, Any],
            parameters: dict[str, str]) -> dict[str, str]:
    cloudformation = boto3.client("cloudformation", region_name=REGION, endpoint_url=endpoint,
                                  **credentials)
    cloudformation.create_stack(
        StackName=name, TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"])
    stack = wait_for(lambda: next(
        (s for s in cloudformation.describe_stacks(StackName=name)["Stacks"]
         if s["StackStatus"] != "CREATE_IN_PROGRESS"), None), 60, f"stack {name}")
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def _owner_stack(endpoint: str, **parameters: str) -> dict[str, Any]:
    owner = _account(endpoint, OWNER)
    site = f"site{secrets.token_hex(3)}"
    outputs = _deploy(endpoint, owner, f"fedsilo-{site}", data_owner_template(), {
        "SiteName": site, "FederationAccountId": CALLER, "ExternalId": EXTERNAL_ID,
        "LaunchRoleName": f"FL-kickoff-{site}", **parameters})
    return {"owner": owner, "site": site, **outputs}


@pytest.fixture
def stacks(moto_endpoint: str) -> dict[str, Any]:
    """Both stacks deployed: the owner's in the owner's account, the server's in the caller's."""
    outputs = _owner_stack(moto_endpoint)
    site = outputs["site"]
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint, **BASE)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    server = _deploy(moto_endpoint, BASE, f"fedsilo-server-{site}", server_template(), {
        "LaunchRoleArns": outputs["LaunchRoleArn"], "VpcId": vpc, "SiteCidr": "10.30.0.0/16",
        "OrchestratorRoleName": f"fedsilo-orchestrator-{site}"})
    return {"server": server, **outputs}


def test_the_stacks_deploy_with_the_roles_and_bucket_they_promise(
        moto_endpoint: str, stacks: dict[str, Any]) -> None:
    assert stacks["LaunchRoleArn"] == f"arn:aws:iam::{OWNER}:role/FL-kickoff-{stacks['site']}"
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_endpoint, **stacks["owner"])
    role = iam.get_role(RoleName=f"FL-kickoff-{stacks['site']}")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{CALLER}:root"}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}
    assert role["MaxSessionDuration"] == 43200
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint, **stacks["owner"])
    encryption = s3.get_bucket_encryption(Bucket=stacks["BucketName"])
    assert encryption["ServerSideEncryptionConfiguration"]["Rules"][0][
        "ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # moto's CloudFormation skips AWS::S3::BucketPolicy; the policy is checked in the template.
    bucket_policy = data_owner_template()["Resources"]["DataBucketPolicy"]["Properties"]
    assert bucket_policy["PolicyDocument"]["Statement"][0]["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}}
    server_iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_endpoint, **BASE)
    orchestrator = server_iam.get_role_policy(RoleName=f"fedsilo-orchestrator-{stacks['site']}",
                                              PolicyName="assume-launch-roles")
    document = orchestrator["PolicyDocument"]  # moto answers a stack's policy in Python's repr
    document = ast.literal_eval(document) if isinstance(document, str) else document
    assert document["Statement"][0]["Resource"] == [stacks["LaunchRoleArn"]]


@pytest.mark.parametrize(("external_id", "allowed"), [
    (EXTERNAL_ID, True), ("someone-elses-id", False), (None, False)])
def test_the_launch_role_is_assumed_only_with_the_owners_external_id(
        moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, stacks: dict[str, Any],
        external_id: str | None, allowed: bool) -> None:
    role = stacks["LaunchRoleArn"]
    gate = TrustPolicyGate(_owner_iam(moto_endpoint, stacks), CALLER, {role}).install(monkeypatch)

    def launcher() -> SageMakerLauncher:
        return SageMakerLauncher(
            site="site3", role_arn=role, region=REGION, endpoint_url=moto_endpoint,
            base_credentials=BASE, assume=AssumeRoleSettings(
                role, external_id=external_id, source_identity="operator",
                tags={"federation": "fraud"}))

    if allowed:
        assert launcher().assumed_role_arn.startswith(f"arn:aws:sts::{OWNER}:assumed-role/")
        assert gate.refused == []
    else:
        with pytest.raises(AccessDenied, match=f"site3: AssumeRole failed: AccessDenied: {role}"):
            launcher()
        assert len(gate.refused) == 1


def _owner_iam(endpoint: str, stacks: dict[str, Any]) -> Any:
    client = boto3.client("iam", region_name=REGION, endpoint_url=endpoint, **stacks["owner"])
    return lambda role_arn: client


def test_a_job_launched_polled_and_stopped_through_the_stacks_roles(
        moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        stacks: dict[str, Any], strict_aws: StrictRequests) -> None:
    role, bucket = stacks["LaunchRoleArn"], stacks["BucketName"]
    TrustPolicyGate(_owner_iam(moto_endpoint, stacks), CALLER, {role}).install(monkeypatch)
    emulator = TrainingJobEmulator(tmp_path / "sagemaker", moto_endpoint,
                                   BASE).install(monkeypatch)
    owner_s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint,
                            **stacks["owner"])
    owner_s3.put_object(Bucket=bucket, Key="data/train/rows.csv", Body=b"0,a\n1,b\n")
    launcher = SageMakerLauncher(
        site="site3", role_arn=role, region=REGION, endpoint_url=moto_endpoint,
        base_credentials=BASE, code_prefix=f"s3://{bucket}/code",
        assume=AssumeRoleSettings(role, external_id=EXTERNAL_ID))
    source = write_tarball(tmp_path / "source.tar.gz", PROGRAMS)
    job = launcher.launch(JobDefinition(
        name=f"fl-site3-{secrets.token_hex(3)}", program="polite.py", source=str(source),
        channels={"train": f"s3://{bucket}/data/train/"}, output=f"s3://{bucket}/output/",
        execution_role_arn=stacks["ExecutionRoleArn"], root_certificates=b"not used\n"))
    try:
        emulated = emulator.jobs[job.name]
        wait_for(lambda: (emulated.base / "output" / "data" / "pids").is_file(), 60,
                 "the job to start")
        assert job.poll() is None and job.last_["TrainingJobStatus"] == "InProgress"
        job.stop()
        assert job.wait(60)["TrainingJobStatus"] == "Stopped"
        assert (emulated.base / "model" / "saved-on-term.txt").is_file()
    finally:
        emulator.stop_all()

    # Every call under the launch role is one the stack's launch policy grants, on its bucket.
    policy = data_owner_template()["Resources"]["LaunchRole"]["Properties"]["Policies"][0]
    granted = {a for s in policy["PolicyDocument"]["Statement"] if "Action" in s
               for a in s["Action"]}  # not the KMS statement, made only with a key
    used = {ACTIONS[r.operation] for r in strict_aws.sent if r.operation in ACTIONS}
    assert used <= granted
    assert granted - used == {"iam:PassRole", "sagemaker:AddTags"}  # PassRole: at create
    buckets = {r.params["Bucket"] for r in strict_aws.sent if r.service == "s3"
               and r.operation in ACTIONS}
    assert buckets == {bucket}


def test_the_federation_file_in_docs_aws_reads(tmp_path: Path) -> None:
    from fedsilo.deploy.federation_config import load_federation_config

    docs = Path(__file__).resolve().parents[2] / "docs" / "aws.md"
    text = docs.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "federation.toml").write_text(text)
    config = load_federation_config(tmp_path / "federation.toml")
    [site] = config.sites
    assert site.external_id == "fraud-federation-7f3c9a" and site.remote
    assert site.source == str(tmp_path / "source.tar.gz")  # a local file, to be uploaded
    assert set(site.channels) == {"train", "identity"}


def test_with_the_sites_kms_key_the_bucket_roles_and_uploads_use_it(
        moto_endpoint: str, strict_aws: StrictRequests) -> None:
    kms = boto3.client("kms", region_name=REGION, endpoint_url=moto_endpoint,
                       **_account(moto_endpoint, OWNER))
    key = kms.create_key(Description="site3")["KeyMetadata"]["Arn"]
    stack = _owner_stack(moto_endpoint, KmsKeyArn=key)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint, **stack["owner"])
    rule = s3.get_bucket_encryption(Bucket=stack["BucketName"])[
        "ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert rule == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_endpoint, **stack["owner"])
    document = iam.get_role_policy(RoleName=f"FL-kickoff-{stack['site']}",
                                   PolicyName="FL-sagemaker-actions")["PolicyDocument"]
    document = ast.literal_eval(document) if isinstance(document, str) else document
    [site_key] = [s for s in document["Statement"] if s.get("Sid") == "SiteKey"]
    assert "kms:CreateGrant" in site_key["Action"] and site_key["Resource"] == key

    launcher = SageMakerLauncher(
        site="site3", role_arn=stack["LaunchRoleArn"], region=REGION,
        endpoint_url=moto_endpoint, base_credentials=BASE, kms_key_id=key,
        code_prefix=f"s3://{stack['BucketName']}/code")
    launcher.launch(JobDefinition(
        name=f"fl-site3-{secrets.token_hex(3)}", program="client.py",
        source="s3://b/code/source.tar.gz", channels={"train": "s3://b/data/train/"},
        output=f"s3://{stack['BucketName']}/output/",
        execution_role_arn=stack["ExecutionRoleArn"], root_certificates=b"ca\n"))
    [upload] = strict_aws.of("PutObject")
    assert (upload["ServerSideEncryption"], upload["SSEKMSKeyId"]) == ("aws:kms", key)
    [created] = strict_aws.of("CreateTrainingJob")
    assert created["OutputDataConfig"]["KmsKeyId"] == key
    assert created["ResourceConfig"]["VolumeKmsKeyId"] == key

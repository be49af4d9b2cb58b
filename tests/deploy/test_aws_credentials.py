"""Assumed-role sessions that outlast their hour, and a clean-up that outlasts a refused one.

moto's STS hands out sessions but never refuses an expired one, nor a caller the role's trust
policy does not name; :mod:`aws_emulation` adds both refusals at the client, on a clock the
tests move forward by hours in a moment.
"""

from __future__ import annotations

import io
import json
import secrets

import boto3
import pytest
from botocore.exceptions import ClientError
from rich.console import Console

from fedsilo.deploy.aws_session import AssumeRoleSettings
from fedsilo.deploy.launchers import JobDefinition, SageMakerLauncher
from fedsilo.deploy.orchestrator import _clean_up

from .aws_emulation import FakeClock, SessionExpiry, TrustPolicyGate, account_iam
from .aws_strict import StrictRequests

pytestmark = pytest.mark.slow

OWNER = "111122223333"
CALLER = "123456789012"  # moto's account for the base credentials
BASE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"
EXTERNAL_ID = "fraud-federation-7f3c9a"


def _definition(name: str) -> JobDefinition:
    return JobDefinition(
        name=name, program="client.py", source="s3://site3-code/code/abc/source.tar.gz",
        channels={"train": "s3://site3-data/data/train/"}, output="s3://site3-data/output/",
        execution_role_arn=f"arn:aws:iam::{OWNER}:role/FL-execution-site3")


def _launch_role(endpoint: str, trusted_external_id: str) -> str:
    """A launch role in the owner's account that trusts the caller with ``ExternalId``."""
    name = f"FL-kickoff-{secrets.token_hex(3)}"
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{CALLER}:root"},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        "Condition": {"StringEquals": {"sts:ExternalId": trusted_external_id}}}]}
    arn = f"arn:aws:iam::{OWNER}:role/{name}"
    account_iam(endpoint, BASE)(arn).create_role(RoleName=name,
                                                 AssumeRolePolicyDocument=json.dumps(trust))
    return arn


def test_a_session_is_renewed_before_it_expires_for_hours_of_polling(
        moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
        strict_aws: StrictRequests) -> None:
    clock = FakeClock()
    expiry = SessionExpiry(clock).install(monkeypatch)
    role = f"arn:aws:iam::{OWNER}:role/FL-kickoff-client-job"
    settings = AssumeRoleSettings(role, external_id=EXTERNAL_ID, source_identity="operator",
                                  tags={"federation": "fraud"}, duration_s=900)
    launcher = SageMakerLauncher(site="site3", role_arn=role, region=REGION,
                                 endpoint_url=moto_endpoint, base_credentials=BASE,
                                 assume=settings, clock=clock)
    job = launcher.launch(_definition(f"fl-site3-{secrets.token_hex(3)}"))
    first = launcher.aws.session.get_credentials().get_frozen_credentials()
    static = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_endpoint,
                          aws_access_key_id=first.access_key,
                          aws_secret_access_key=first.secret_key,
                          aws_session_token=first.token)  # what the launcher used to hold

    for _ in range(18):  # three hours, 10 minutes a poll, sessions of 15 minutes
        clock.advance(600)
        assert job.poll() == "Completed"
    assert expiry.refused == []
    assert launcher.aws.assumptions_ >= 12  # one session per 15 minutes, renewed early
    sent = strict_aws.of("AssumeRole")
    assert len(sent) == launcher.aws.assumptions_
    assert all(r["ExternalId"] == EXTERNAL_ID and r["DurationSeconds"] == 900 for r in sent)
    with pytest.raises(ClientError, match="ExpiredToken"):
        static.describe_training_job(TrainingJobName=job.name)
    assert expiry.refused == ["DescribeTrainingJob"]


def test_the_clean_up_reports_each_job_it_cannot_stop_with_its_arn(
        moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    SessionExpiry(clock).install(monkeypatch)
    role = _launch_role(moto_endpoint, EXTERNAL_ID)
    gate = TrustPolicyGate(account_iam(moto_endpoint, BASE), CALLER, {role}).install(monkeypatch)
    launcher = SageMakerLauncher(
        site="site3", role_arn=role, region=REGION, endpoint_url=moto_endpoint,
        base_credentials=BASE, clock=clock,
        assume=AssumeRoleSettings(role, external_id=EXTERNAL_ID, duration_s=900))
    handles = {f"site3-{i}": launcher.launch(_definition(f"fl-site3-{secrets.token_hex(3)}"))
               for i in range(2)}
    assert all(h.arn.startswith(f"arn:aws:sagemaker:{REGION}:{OWNER}:training-job/")
               for h in handles.values())

    # The owner withdraws the trust, and the session runs out: no new one can be had.
    name = role.rsplit("/", 1)[1]
    account_iam(moto_endpoint, BASE)(role).update_assume_role_policy(
        RoleName=name, PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
    clock.advance(1000)
    out = io.StringIO()
    _clean_up(handles, dict.fromkeys(handles, launcher), Console(file=out, width=400))

    printed = out.getvalue()
    for handle in handles.values():
        assert handle.arn in printed
        assert (f"aws sagemaker stop-training-job --region {REGION} "
                f"--training-job-name {handle.name}") in printed
    assert len(gate.refused) >= 2  # the refresh, then the renewal the clean-up asked for


def test_the_clean_up_renews_a_refused_session_and_goes_on(
        moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    expiry = SessionExpiry(clock).install(monkeypatch)
    role = f"arn:aws:iam::{OWNER}:role/FL-kickoff-client-job"
    launcher = SageMakerLauncher(site="site3", role_arn=role, region=REGION,
                                 endpoint_url=moto_endpoint, base_credentials=BASE,
                                 assume=AssumeRoleSettings(role, duration_s=900), clock=clock)
    job = launcher.launch(_definition(f"fl-site3-{secrets.token_hex(3)}"))
    # A client whose session the service refuses, as after a refresh that came too late.
    first = launcher.aws.session.get_credentials().get_frozen_credentials()
    launcher.client = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_endpoint,
                                   aws_access_key_id=first.access_key,
                                   aws_secret_access_key=first.secret_key,
                                   aws_session_token=first.token)
    clock.advance(1000)
    out = io.StringIO()
    _clean_up({"site3": job}, {"site3": launcher}, Console(file=out, width=400))
    assert expiry.refused == ["DescribeTrainingJob"]  # refused once, then renewed
    assert job.last_["TrainingJobStatus"] == "Completed"
    assert "still running" not in out.getvalue()

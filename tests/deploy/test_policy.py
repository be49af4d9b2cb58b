"""Policy evaluation: IAM's order (explicit deny, then allow, else deny) on the seed's shapes."""

from __future__ import annotations

import pytest

from fedsilo.deploy.errors import ValidationError
from fedsilo.deploy.policy import PolicyDocument, matches
from fedsilo.deploy.roles import (
    JOB_ACTIONS,
    Role,
    job_arn,
    launch_role_policy,
    role_arn,
    trust_policy,
)

SITE = "site1"
EXEC_ROLE = role_arn(SITE, "service-role/FL-execution")
OTHER_EXEC_ROLE = role_arn(SITE, "service-role/admin")


def _launch_role(allow_logs: bool = False) -> Role:
    return Role.from_dict({
        "RoleName": "FL-kickoff-client-job", "Arn": role_arn(SITE, "FL-kickoff-client-job"),
        "AssumeRolePolicyDocument": trust_policy({"Key": ["sha256:aa"]}),
        "Policies": [{"PolicyName": "actions",
                      "PolicyDocument": launch_role_policy(SITE, EXEC_ROLE,
                                                           allow_logs=allow_logs)}],
    })


@pytest.mark.parametrize(("action", "resource", "allowed"), [
    *[(a, job_arn(SITE, "fl-job-1"), True) for a in JOB_ACTIONS],
    ("job:createtrainingjob", job_arn(SITE, "x"), True),  # action names ignore case, as in IAM
    ("iam:PassRole", EXEC_ROLE, True),
    ("iam:PassRole", OTHER_EXEC_ROLE, False),  # PassRole on one execution role only
    ("job:CreateTrainingJob", job_arn("site2", "fl-job-1"), False),  # another site's jobs
    ("job:DeleteTrainingJob", job_arn(SITE, "fl-job-1"), False),  # not listed: default deny
    ("logs:GetLogEvents", job_arn(SITE, "fl-job-1"), False),  # logs only where granted
    ("data:GetObject", f"arn:fedsilo:data::{SITE}:channel/train", False),
    ("sts:AssumeRole", role_arn(SITE, "FL-kickoff-client-job"), False),
])
def test_launch_role_allows_only_the_seeds_actions(action: str, resource: str,
                                                   allowed: bool) -> None:
    assert _launch_role().allows(action, resource).allowed is allowed


def test_logs_are_readable_only_when_the_policy_grants_them() -> None:
    resource = job_arn(SITE, "fl-job-1")
    assert not _launch_role().allows("logs:GetLogEvents", resource).allowed
    assert _launch_role(allow_logs=True).allows("logs:GetLogEvents", resource).allowed


def test_explicit_deny_wins_over_allow() -> None:
    doc = PolicyDocument.from_dict({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "job:*", "Resource": "*"},
        {"Sid": "NoStop", "Effect": "Deny", "Action": "job:StopTrainingJob", "Resource": "*"},
    ]})
    assert doc.evaluate("job:DescribeTrainingJob", "arn:x").allowed
    decision = doc.evaluate("job:StopTrainingJob", "arn:x")
    assert not decision.allowed and "NoStop" in decision.reason


def test_trust_policy_matches_principal_by_fingerprint() -> None:
    doc = PolicyDocument.from_dict(trust_policy({"Key": ["sha256:aa"],
                                                 "Certificate": ["sha256:cc"]}))
    assert doc.evaluate("sts:AssumeRole", principal={"Key": "sha256:aa"}).allowed
    assert doc.evaluate("sts:AssumeRole", principal={"Key": "sha256:bb",
                                                     "Certificate": "sha256:cc"}).allowed
    assert not doc.evaluate("sts:AssumeRole", principal={"Key": "sha256:bb"}).allowed


def test_conditions_on_the_request_context() -> None:
    doc = PolicyDocument.from_dict({"Statement": {
        "Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole",
        "Condition": {"StringLike": {"fedsilo:RoleSessionName": "fl-*"}}}})
    assert doc.evaluate("sts:AssumeRole", principal={"Key": "k"},
                        context={"fedsilo:RoleSessionName": "fl-round"}).allowed
    assert not doc.evaluate("sts:AssumeRole", principal={"Key": "k"},
                            context={"fedsilo:RoleSessionName": "other"}).allowed
    assert not doc.evaluate("sts:AssumeRole", principal={"Key": "k"}).allowed


@pytest.mark.parametrize(("document", "message"), [
    ({"Statement": []}, "non-empty list"),
    ({"Version": "2008-10-17", "Statement": [{"Effect": "Allow", "Action": "a"}]}, "Version"),
    ({"Statement": [{"Effect": "Maybe", "Action": "a"}]}, "Effect"),
    ({"Statement": [{"Effect": "Allow", "NotAction": "a"}]}, "unsupported keys"),
    ({"Statement": [{"Effect": "Allow", "Action": "a",
                     "Condition": {"IpAddress": {"x": "y"}}}]}, "not supported"),
    ({"Statement": [{"Effect": "Allow", "Action": []}]}, "Action"),
])
def test_documents_it_cannot_honour_are_refused(document: dict[str, object],
                                                message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PolicyDocument.from_dict(document)


def test_wildcards_follow_iam() -> None:
    assert matches("arn:*:job/*", "arn:a:b:job/x")
    assert matches("job-?", "job-1") and not matches("job-?", "job-12")
    assert not matches("job.[1]", "job.1")  # regex characters are literal
    assert not matches("Arn", "arn")  # resources are case sensitive


def test_seed_documents_round_trip() -> None:
    raw = launch_role_policy(SITE, EXEC_ROLE)
    assert PolicyDocument.from_dict(PolicyDocument.from_dict(raw).to_dict()) == \
        PolicyDocument.from_dict(raw)

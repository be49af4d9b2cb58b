"""Policy evaluation: IAM's order (explicit deny, then allow, else deny) on the seed's shapes."""

from __future__ import annotations

import re

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


JOB = "arn:fedsilo:job::site1:training-job/fl-1"
OTHER_JOB = "arn:fedsilo:job::site2:training-job/fl-1"
KEY, OTHER_KEY = "sha256:" + "a" * 64, "sha256:" + "b" * 64
CERT = "sha256:" + "c" * 64


def _allow(**fields: object) -> dict[str, object]:
    return {"Effect": "Allow", **fields}


def _deny(**fields: object) -> dict[str, object]:
    return {"Effect": "Deny", **fields}


def _trusting(*statements: dict[str, object]) -> list[dict[str, object]]:
    return [{"Action": "sts:AssumeRole", **s} for s in statements]


# (statements, kind, request, allowed): the decision IAM's documented evaluation logic gives.
# A request is (action, resource or principal, context).
CASES = [
    # -- order: default deny, allow, deny beats allow ------------------------------------------
    ([_allow(Action="job:*", Resource="*")], "identity", ("job:StopTrainingJob", JOB, {}), True),
    ([_allow(Action="job:Describe*", Resource="*")], "identity",
     ("job:StopTrainingJob", JOB, {}), False),
    ([_allow(Action="job:*", Resource="*"), _deny(Action="job:StopTrainingJob", Resource="*")],
     "identity", ("job:StopTrainingJob", JOB, {}), False),
    ([_deny(Action="job:StopTrainingJob", Resource="*"), _allow(Action="*", Resource="*")],
     "identity", ("job:StopTrainingJob", JOB, {}), False),
    ([_deny(Action="job:StopTrainingJob", Resource="*"), _allow(Action="*", Resource="*")],
     "identity", ("job:ListTrainingJobs", JOB, {}), True),
    ([_deny(Action="*", Resource=OTHER_JOB), _allow(Action="job:*", Resource="*")],
     "identity", ("job:DescribeTrainingJob", JOB, {}), True),
    # -- actions: case-insensitive, wildcards ---------------------------------------------------
    ([_allow(Action="JOB:describetrainingjob", Resource="*")], "identity",
     ("job:DescribeTrainingJob", JOB, {}), True),
    ([_allow(Action="job:?topTrainingJob", Resource="*")], "identity",
     ("job:StopTrainingJob", JOB, {}), True),
    ([_allow(Action="job:*Job", Resource="*")], "identity", ("job:ListTrainingJobs", JOB, {}),
     False),
    # -- resources: case-sensitive, wildcards span ':' and '/' -----------------------------------
    ([_allow(Action="job:*", Resource="arn:fedsilo:job::site1:training-job/*")], "identity",
     ("job:StopTrainingJob", JOB, {}), True),
    ([_allow(Action="job:*", Resource="arn:fedsilo:job::site1:training-job/*")], "identity",
     ("job:StopTrainingJob", OTHER_JOB, {}), False),
    ([_allow(Action="job:*", Resource="arn:fedsilo:job::SITE1:training-job/*")], "identity",
     ("job:StopTrainingJob", JOB, {}), False),
    ([_allow(Action="job:*", Resource="arn:fedsilo:job:*:*:*")], "identity",
     ("job:StopTrainingJob", JOB, {}),
     True),
    # -- NotAction / NotResource --------------------------------------------------------------
    ([_allow(NotAction="job:StopTrainingJob", Resource="*")], "identity",
     ("job:DescribeTrainingJob", JOB, {}), True),
    ([_allow(NotAction="job:StopTrainingJob", Resource="*")], "identity",
     ("job:StopTrainingJob", JOB, {}), False),
    ([_allow(Action="*", Resource="*"), _deny(NotAction=["job:Describe*", "job:List*"],
                                              Resource="*")],
     "identity", ("job:CreateTrainingJob", JOB, {}), False),
    ([_allow(Action="*", Resource="*"), _deny(NotAction=["job:Describe*", "job:List*"],
                                              Resource="*")],
     "identity", ("job:ListTrainingJobs", JOB, {}), True),
    ([_allow(Action="job:*", NotResource=OTHER_JOB)], "identity",
     ("job:StopTrainingJob", JOB, {}), True),
    ([_allow(Action="job:*", NotResource=OTHER_JOB)], "identity",
     ("job:StopTrainingJob", OTHER_JOB, {}), False),
    ([_allow(Action="job:*", Resource="*"), _deny(Action="job:*",
                                                  NotResource="arn:fedsilo:job::site1:*")],
     "identity", ("job:StopTrainingJob", OTHER_JOB, {}), False),
    # -- principals ---------------------------------------------------------------------------
    (_trusting(_allow(Principal={"Key": KEY})), "trust", ("sts:AssumeRole", {"Key": KEY}, {}),
     True),
    (_trusting(_allow(Principal={"Key": KEY})), "trust",
     ("sts:AssumeRole", {"Key": OTHER_KEY}, {}), False),
    (_trusting(_allow(Principal={"Certificate": [CERT]})), "trust",
     ("sts:AssumeRole", {"Key": OTHER_KEY, "Certificate": CERT}, {}), True),
    (_trusting(_allow(Principal={"Certificate": [CERT]})), "trust",
     ("sts:AssumeRole", {"Key": CERT}, {}), False),  # a key is not a certificate
    (_trusting(_allow(Principal="*")), "trust", ("sts:AssumeRole", {"Key": OTHER_KEY}, {}),
     True),
    (_trusting(_allow(Principal="*"), _deny(Principal={"Key": OTHER_KEY})), "trust",
     ("sts:AssumeRole", {"Key": OTHER_KEY}, {}), False),
    (_trusting(_allow(Principal={"Key": KEY})), "trust", ("sts:TagSession", {"Key": KEY}, {}),
     False),
    # -- conditions: keys ignore case ----------------------------------------------------------
    (_trusting(_allow(Principal={"Key": KEY},
                      Condition={"StringEquals": {"STS:EXTERNALID": "acme-42"}})),
     "trust", ("sts:AssumeRole", {"Key": KEY}, {"sts:ExternalId": "acme-42"}), True),
    (_trusting(_allow(Principal={"Key": KEY},
                      Condition={"StringEquals": {"sts:ExternalId": "acme-42"}})),
     "trust", ("sts:AssumeRole", {"Key": KEY}, {"sts:ExternalId": "acme-43"}), False),
    (_trusting(_allow(Principal={"Key": KEY},
                      Condition={"StringEquals": {"sts:ExternalId": "acme-42"}})),
     "trust", ("sts:AssumeRole", {"Key": KEY}, {}), False),  # absent key: no match
    (_trusting(_allow(Principal="*", Condition={"StringEquals": {
        "fedsilo:PrincipalKey": KEY}})), "trust", ("sts:AssumeRole", {"Key": KEY},
                                                   {"fedsilo:PrincipalKey": KEY}), True),
    # -- string operators ----------------------------------------------------------------------
    ([_allow(Action="*", Resource="*", Condition={"StringNotEquals": {
        "aws:SourceIdentity": "mallory"}})], "identity",
     ("job:StopTrainingJob", JOB, {"aws:SourceIdentity": "alice"}), True),
    ([_allow(Action="*", Resource="*", Condition={"StringNotEquals": {
        "aws:SourceIdentity": "mallory"}})], "identity", ("job:StopTrainingJob", JOB, {}),
     True),  # negated operator, absent key: holds
    ([_allow(Action="*", Resource="*", Condition={"StringEqualsIgnoreCase": {
        "aws:SourceIdentity": "ALICE"}})], "identity",
     ("job:StopTrainingJob", JOB, {"aws:SourceIdentity": "alice"}), True),
    ([_allow(Action="*", Resource="*", Condition={"StringEquals": {
        "aws:SourceIdentity": "ALICE"}})], "identity",
     ("job:StopTrainingJob", JOB, {"aws:SourceIdentity": "alice"}), False),
    ([_allow(Action="*", Resource="*", Condition={"StringLike": {
        "sts:RoleSessionName": ["fl-*", "ops-?"]}})], "identity",
     ("job:StopTrainingJob", JOB, {"sts:RoleSessionName": "ops-1"}), True),
    ([_allow(Action="*", Resource="*"), _deny(Action="*", Resource="*", Condition={
        "StringNotLike": {"sts:RoleSessionName": "fl-*"}})], "identity",
     ("job:StopTrainingJob", JOB, {"sts:RoleSessionName": "debug"}), False),
    # -- IfExists, Null, ForAnyValue / ForAllValues --------------------------------------------
    ([_allow(Action="*", Resource="*", Condition={"StringEqualsIfExists": {
        "aws:SourceIdentity": "alice"}})], "identity", ("job:StopTrainingJob", JOB, {}), True),
    ([_allow(Action="*", Resource="*", Condition={"StringEqualsIfExists": {
        "aws:SourceIdentity": "alice"}})], "identity",
     ("job:StopTrainingJob", JOB, {"aws:SourceIdentity": "bob"}), False),
    ([_allow(Action="*", Resource="*"), _deny(Action="*", Resource="*", Condition={
        "Null": {"sts:ExternalId": "true"}})], "identity", ("job:StopTrainingJob", JOB, {}),
     False),
    ([_allow(Action="*", Resource="*"), _deny(Action="*", Resource="*", Condition={
        "Null": {"sts:ExternalId": "true"}})], "identity",
     ("job:StopTrainingJob", JOB, {"sts:ExternalId": "x"}), True),
    ([_allow(Action="*", Resource="*", Condition={"ForAnyValue:StringEquals": {
        "aws:SourceIdentity": ["a", "b"]}})], "identity",
     ("job:StopTrainingJob", JOB, {"aws:SourceIdentity": ["c", "b"]}), True),
    ([_allow(Action="*", Resource="*", Condition={"ForAnyValue:StringEquals": {
        "aws:SourceIdentity": ["a", "b"]}})], "identity", ("job:StopTrainingJob", JOB, {}),
     False),
    ([_allow(Action="*", Resource="*", Condition={"ForAllValues:StringEquals": {
        "aws:SourceIdentity": ["a", "b"]}})], "identity",
     ("job:StopTrainingJob", JOB, {"aws:SourceIdentity": ["a", "c"]}), False),
    ([_allow(Action="*", Resource="*", Condition={"ForAllValues:StringEquals": {
        "aws:SourceIdentity": ["a", "b"]}})], "identity", ("job:StopTrainingJob", JOB, {}),
     True),  # IAM: vacuously true for an absent key
    # -- Bool, numeric, date, ARN --------------------------------------------------------------
    ([_allow(Action="*", Resource="*", Condition={"Bool": {"aws:SecureTransport": True}})],
     "identity", ("job:StopTrainingJob", JOB, {"aws:SecureTransport": "true"}), True),
    ([_allow(Action="*", Resource="*", Condition={"Bool": {"aws:SecureTransport": "true"}})],
     "identity", ("job:StopTrainingJob", JOB, {"aws:SecureTransport": "false"}), False),
    (_trusting(_allow(Principal="*", Condition={"NumericLessThanEquals": {
        "sts:DurationSeconds": 3600}})), "trust",
     ("sts:AssumeRole", {"Key": KEY}, {"sts:DurationSeconds": "3600"}), True),
    (_trusting(_allow(Principal="*", Condition={"NumericLessThan": {
        "sts:DurationSeconds": "3600"}})), "trust",
     ("sts:AssumeRole", {"Key": KEY}, {"sts:DurationSeconds": "3600"}), False),
    ([_allow(Action="*", Resource="*", Condition={"DateLessThan": {
        "aws:CurrentTime": "2030-01-01T00:00:00Z"}})], "identity",
     ("job:StopTrainingJob", JOB, {"aws:CurrentTime": "2029-12-31T23:59:59Z"}), True),
    ([_allow(Action="*", Resource="*", Condition={"DateLessThan": {
        "aws:CurrentTime": "2030-01-01T00:00:00Z"}})], "identity",
     ("job:StopTrainingJob", JOB, {"aws:CurrentTime": "2030-01-01T00:00:01Z"}), False),
    ([_allow(Action="*", Resource="*", Condition={"DateGreaterThan": {
        "aws:EpochTime": "2030-01-01T00:00:00Z"}})], "identity",
     ("job:StopTrainingJob", JOB, {"aws:EpochTime": "1893456001"}), True),
    (_trusting(_allow(Principal="*", Condition={"ArnLike": {
        "aws:SourceIdentity": "arn:fedsilo:iam::*:role/fl-*"}})), "trust",
     ("sts:AssumeRole", {"Key": KEY}, {"aws:SourceIdentity": "arn:fedsilo:iam::s2:role/fl-x"}),
     True),
    (_trusting(_allow(Principal="*", Condition={"ArnEquals": {
        "aws:SourceIdentity": "arn:fedsilo:iam::*:role/fl-*"}})), "trust",
     ("sts:AssumeRole", {"Key": KEY}, {"aws:SourceIdentity": "arn:fedsilo:iam:s2:role/fl-x"}),
     False),  # five parts: not an ARN, so no ARN pattern matches
    (_trusting(_allow(Principal="*"), _deny(Principal="*", Condition={"ArnNotLike": {
        "aws:SourceIdentity": "arn:fedsilo:iam::*:role/fl-*"}})), "trust",
     ("sts:AssumeRole", {"Key": KEY}, {"aws:SourceIdentity": "arn:fedsilo:iam::s2:role/ops"}),
     False),
]


@pytest.mark.parametrize(("statements", "kind", "request_", "allowed"), CASES)
def test_decisions_follow_iams_evaluation_logic(statements: list[dict[str, object]],
                                                kind: str, request_: tuple[str, object, dict],
                                                allowed: bool) -> None:
    document = PolicyDocument.from_dict({"Version": "2012-10-17", "Statement": statements},
                                        kind=kind)  # type: ignore[arg-type]
    action, target, context = request_
    if kind == "trust":
        decision = document.evaluate(action, principal=target, context=context)  # type: ignore
    else:
        decision = document.evaluate(action, target, context=context)  # type: ignore[arg-type]
    assert decision.allowed is allowed, decision
    assert (decision.statement is None) == (decision.reason.endswith("(denied by default)"))


def test_a_decision_names_the_statement_that_made_it() -> None:
    document = PolicyDocument.from_dict({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "job:*", "Resource": "*"},
        {"Sid": "NoStop", "Effect": "Deny", "Action": "job:StopTrainingJob", "Resource": "*"},
    ]}, "actions")
    assert document.evaluate("job:StopTrainingJob", JOB).statement == "actions.NoStop"
    assert document.evaluate("job:ListTrainingJobs", JOB).statement == "actions.0"


def _doc(statement: dict[str, object], **top: object) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": [statement], **top}


# Documents IAM refuses (and a few that would only ever mean less than they say).
REFUSED = [
    (_doc(_allow(Action="job:*", Resource="*"), Version="2008-10-18"), "identity", "Version"),
    ({"Version": "2012-10-17", "Statement": []}, "identity", "non-empty list"),
    (_doc(_allow(Action="job:*", Resource="*"), Extra=1), "identity", "unknown keys"),
    (_doc({"Effect": "Maybe", "Action": "job:*", "Resource": "*"}), "identity", "Effect"),
    (_doc({"Effect": "allow", "Action": "job:*", "Resource": "*"}), "identity", "Effect"),
    (_doc(_allow(Resource="*")), "identity", "exactly one of Action and NotAction"),
    (_doc(_allow(Action="job:*", NotAction="job:Stop*", Resource="*")), "identity",
     "exactly one of Action"),
    (_doc(_allow(Action=[], Resource="*")), "identity", "Action"),
    (_doc(_allow(Action="StopTrainingJob", Resource="*")), "identity", "<service>:<action>"),
    (_doc(_allow(Action="job:*")), "identity", "exactly one of Resource and NotResource"),
    (_doc(_allow(Action="job:*", Resource="training-job/x")), "identity", "an ARN"),
    (_doc(_allow(Action="job:*", Resource="*", Principal="*")), "identity",
     "may not name a Principal"),
    (_doc(_allow(Action="job:*", Resource="arn:fedsilo:job::${aws:username}:x/y")), "identity",
     "policy variables"),
    (_doc(_allow(Action="sts:AssumeRole", Principal={"Key": "sha256:*"})), "trust",
     "partial wildcard"),
    (_doc(_allow(Action="sts:AssumeRole", Principal={"Key": ["sha256:a?"]})), "trust",
     "partial wildcard"),
    (_doc(_allow(Action="sts:AssumeRole", Principal={"AWS": "*"})), "trust", "kind 'AWS'"),
    (_doc(_allow(Action="sts:AssumeRole")), "trust", "needs a Principal"),
    (_doc(_allow(Action="sts:AssumeRole", Principal="*", Resource="*")), "trust",
     "may not name a Resource"),
    (_doc(_allow(Action="job:*", Principal="*")), "trust", "sts: actions only"),
    (_doc(_allow(Action="sts:AssumeRole", NotPrincipal={"Key": KEY})), "trust",
     "NotPrincipal"),
    (_doc(_allow(Action="job:*", Resource="*", Condition={"IpAddress": {
        "aws:SourceIdentity": "10.0.0.0/8"}})), "identity", "operator 'IpAddress'"),
    (_doc(_allow(Action="job:*", Resource="*", Condition={"StringEqualz": {
        "aws:SourceIdentity": "x"}})), "identity", "not supported"),
    (_doc(_allow(Action="job:*", Resource="*", Condition={"SomeValues:StringEquals": {
        "aws:SourceIdentity": "x"}})), "identity", "not supported"),
    (_doc(_allow(Action="job:*", Resource="*", Condition={"StringEquals": {
        "aws:PrincipalTag/team": "x"}})), "identity", "never hold"),
    (_doc(_allow(Action="job:*", Resource="*", Condition={"NumericLessThan": {
        "sts:DurationSeconds": "soon"}})), "identity", "NumericLessThan value 'soon'"),
    (_doc(_allow(Action="job:*", Resource="*", Condition={"DateLessThan": {
        "aws:CurrentTime": "tomorrow"}})), "identity", "DateLessThan value"),
    (_doc(_allow(Action="job:*", Resource="*", Condition={"Bool": {
        "aws:SecureTransport": "yes"}})), "identity", "Bool value"),
    ({"Version": "2012-10-17", "Statement": [
        {"Sid": "A", "Effect": "Allow", "Action": "job:*", "Resource": "*"},
        {"Sid": "A", "Effect": "Deny", "Action": "job:*", "Resource": "*"}]}, "identity",
     "used twice"),
    (_doc({"Sid": "no spaces", "Effect": "Allow", "Action": "job:*", "Resource": "*"}),
     "identity", "letters and digits"),
]


@pytest.mark.parametrize(("document", "kind", "message"), REFUSED)
def test_documents_iam_refuses_are_refused_when_read(document: dict[str, object], kind: str,
                                                     message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        PolicyDocument.from_dict(document, kind=kind)  # type: ignore[arg-type]


def test_wildcards_follow_iam() -> None:
    assert matches("arn:*:job/*", "arn:a:b:job/x")
    assert matches("job-?", "job-1") and not matches("job-?", "job-12")
    assert not matches("job.[1]", "job.1") and matches("job.[1]", "job.[1]")  # all literal
    assert not matches("Arn", "arn")  # resources are case sensitive


def test_seed_documents_round_trip() -> None:
    raw = launch_role_policy(SITE, EXEC_ROLE)
    assert PolicyDocument.from_dict(PolicyDocument.from_dict(raw).to_dict()) == \
        PolicyDocument.from_dict(raw)

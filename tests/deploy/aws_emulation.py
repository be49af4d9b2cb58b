"""Two checks AWS makes that moto does not, emulated at the boto3 client in the test process.

- :class:`SessionExpiry`: AWS refuses a request signed with an assumed-role key whose session
  has expired (``ExpiredTokenException``); moto never does. The gate moves each AssumeRole
  answer's expiry onto the test's clock (moto's STS counts on the real one), records it, and
  refuses later requests signed with an expired key.
- :class:`TrustPolicyGate`: AWS lets a caller assume a role only when the role's trust policy
  allows it (principal, ``sts:ExternalId`` condition, and ``sts:TagSession`` /
  ``sts:SetSourceIdentity`` when the request carries tags or a source identity); moto lets
  anyone assume anything. The gate reads the role's trust policy back from moto's IAM (as
  CloudFormation created it) and refuses what AWS would refuse with ``AccessDenied``.

Both hook every botocore session made while they are installed (botocore's built-in handler
list) on ``before-send``, after the request is signed, and raise the ``ClientError`` the
service would have answered.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import boto3
from botocore.exceptions import ClientError

from .aws_strict import install_handlers

__all__ = ["FakeClock", "SessionExpiry", "TrustPolicyGate"]

_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


class FakeClock:
    """Real time plus an offset the test advances."""

    def __init__(self) -> None:
        self.offset = datetime.timedelta()

    def __call__(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += datetime.timedelta(seconds=seconds)


def _operation(event_name: str) -> str:
    return event_name.rsplit(".", 1)[-1]


class SessionExpiry:
    """Refuse requests signed with an assumed-role key past its expiry on ``clock``."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.expiries: dict[str, datetime.datetime] = {}
        self.refused: list[str] = []

    def install(self, monkeypatch: Any) -> SessionExpiry:
        install_handlers(monkeypatch, ("after-call.sts.AssumeRole", self._remember),
                 ("before-send", self._check))
        return self

    def _remember(self, parsed: dict[str, Any], **_: Any) -> None:
        found = parsed.get("Credentials")
        if found:  # the session starts now on the test's clock
            found["Expiration"] += self.clock.offset
            self.expiries[found["AccessKeyId"]] = found["Expiration"]

    def _check(self, request: Any, event_name: str, **_: Any) -> None:
        header = request.headers.get("Authorization", b"")
        match = _CREDENTIAL.search(header.decode() if isinstance(header, bytes) else header)
        if not match or match.group(1) not in self.expiries:
            return
        if self.clock() >= self.expiries[match.group(1)]:
            self.refused.append(_operation(event_name))
            raise ClientError({"Error": {"Code": "ExpiredTokenException",
                                         "Message": "The security token included in the "
                                                    "request is expired"}},
                              _operation(event_name))


class TrustPolicyGate:
    """Refuse AssumeRole calls the role's trust policy (read from moto's IAM) does not allow.

    Parameters
    ----------
    iam_for:
        An IAM client of the account that owns a given role ARN.
    caller_account:
        The account of the base credentials that call AssumeRole.
    guarded:
        The role ARNs checked (the test's own set-up assumes others freely, as moto lets it).
    """

    def __init__(self, iam_for: Callable[[str], Any], caller_account: str,
                 guarded: set[str]) -> None:
        self.iam_for = iam_for
        self.caller_account = caller_account
        self.guarded = guarded
        self.refused: list[str] = []

    def install(self, monkeypatch: Any) -> TrustPolicyGate:
        install_handlers(monkeypatch, ("before-send.sts.AssumeRole", self._check))
        return self

    def _check(self, request: Any, **_: Any) -> None:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        form = {k: v[0] for k, v in parse_qs(body).items()}
        role_arn = form["RoleArn"]
        if role_arn not in self.guarded:
            return
        name = role_arn.split(":role/", 1)[1].rsplit("/", 1)[-1]
        try:
            document = self.iam_for(role_arn).get_role(RoleName=name)["Role"][
                "AssumeRolePolicyDocument"]
        except ClientError:
            document = {"Statement": []}
        if isinstance(document, str):
            document = json.loads(document)
        needed = {"sts:AssumeRole"}
        if any(k.startswith("Tags.member") for k in form):
            needed.add("sts:TagSession")
        if "SourceIdentity" in form:
            needed.add("sts:SetSourceIdentity")
        allowed = {a for s in document["Statement"] if self._matches(s, form)
                   for a in _as_list(s.get("Action", []))}
        if not needed <= allowed:
            reason = f"{role_arn} does not allow {sorted(needed - allowed)}"
            self.refused.append(reason)
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": reason}},
                              "AssumeRole")

    def _matches(self, statement: dict[str, Any], form: dict[str, str]) -> bool:
        if statement.get("Effect") != "Allow":
            return False
        principals = _as_list(statement.get("Principal", {}).get("AWS", []))
        if not ({f"arn:aws:iam::{self.caller_account}:root", self.caller_account}
                & set(principals)):
            return False
        for operator, conditions in statement.get("Condition", {}).items():
            if operator != "StringEquals":
                return False  # anything this gate cannot evaluate is not granted
            for key, expected in conditions.items():
                if key != "sts:ExternalId" or form.get("ExternalId") not in _as_list(expected):
                    return False
        return True


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def account_iam(endpoint: str, base: dict[str, str]) -> Callable[[str], Any]:
    """An IAM client in the account of a role ARN (moto: through a role assumed there)."""
    def iam_for(role_arn: str) -> Any:
        account = role_arn.split(":")[4]
        sts = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint, **base)
        found = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/admin",
                                RoleSessionName="trust-check")["Credentials"]
        return boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint,
                            aws_access_key_id=found["AccessKeyId"],
                            aws_secret_access_key=found["SecretAccessKey"],
                            aws_session_token=found["SessionToken"])
    return iam_for

"""A boto3 session under a role assumed in a data owner's account, renewed before it expires.

A federation can outlast one session (AssumeRole's default is an hour; a training job may run
for a day), so the credentials are botocore's ``DeferredRefreshableCredentials``: each call
checks the expiry and, inside botocore's refresh window, assumes the role again with the same
request. The request carries what AWS asks of a third party that assumes a customer's role:
``ExternalId`` (the data owner's trust policy requires it, which closes the confused-deputy
hole), ``SourceIdentity`` (recorded in the data owner's CloudTrail for every call of the
session and of any session chained from it), session ``Tags`` and ``DurationSeconds``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AssumeRoleSettings", "AssumedRoleSession"]

Clock = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class AssumeRoleSettings:
    """How to assume a site's launch role.

    Parameters
    ----------
    role_arn:
        The launch role in the data owner's account.
    session_name:
        ``RoleSessionName``: shown in the assumed-role ARN and in the owner's CloudTrail.
    external_id:
        The secret the owner's trust policy requires (``sts:ExternalId``); None sends none.
    source_identity:
        Who runs the federation (``sts:SourceIdentity``); set once, it cannot be changed by
        the session.
    tags:
        Session tags (``aws:PrincipalTag/<key>`` in the owner's policies).
    duration_s:
        ``DurationSeconds``, 900 to the role's MaxSessionDuration (at most 43,200).
    """

    role_arn: str
    session_name: str = "fedsilo-federation"
    external_id: str | None = None
    source_identity: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    duration_s: int = 3600

    def request(self) -> dict[str, Any]:
        """The AssumeRole arguments."""
        request: dict[str, Any] = {"RoleArn": self.role_arn, "RoleSessionName": self.session_name,
                                   "DurationSeconds": self.duration_s}
        if self.external_id:
            request["ExternalId"] = self.external_id
        if self.source_identity:
            request["SourceIdentity"] = self.source_identity
        if self.tags:
            request["Tags"] = [{"Key": k, "Value": v} for k, v in self.tags.items()]
        return request


class AssumedRoleSession:
    """Clients for one site's account, under credentials that renew themselves.

    Parameters
    ----------
    settings:
        The role to assume and how.
    region, endpoint_url:
        Where the clients go (``endpoint_url``: a test server instead of AWS).
    base_credentials:
        The orchestrator's own credentials as boto3 keyword arguments; None uses boto3's
        default chain (environment, profile, instance role).
    clock:
        The time botocore compares the expiry with (tests move it forward).
    """

    def __init__(self, settings: AssumeRoleSettings, *, region: str,
                 endpoint_url: str | None = None,
                 base_credentials: dict[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        import boto3

        self.settings = settings
        self.region = region
        self.endpoint_url = endpoint_url
        self.assumed_role_arn_ = ""
        self.assumptions_ = 0
        base = boto3.Session(region_name=region, **(base_credentials or {}))
        self._sts = base.client("sts", endpoint_url=endpoint_url)
        self._clock = clock or _utc_now
        self.session = self._new_session()

    def _new_session(self) -> Any:
        import boto3
        import botocore.session
        from botocore.credentials import (
            CredentialProvider,
            CredentialResolver,
            DeferredRefreshableCredentials,
        )

        credentials = DeferredRefreshableCredentials(self._assume, "assume-role",
                                                     time_fetcher=self._clock)

        class _Assumed(CredentialProvider):  # type: ignore[misc]
            METHOD = "assume-role"

            def load(self) -> DeferredRefreshableCredentials:
                return credentials

        core = botocore.session.Session()
        core.register_component("credential_provider", CredentialResolver([_Assumed()]))
        return boto3.Session(botocore_session=core, region_name=self.region)

    def _assume(self) -> dict[str, Any]:
        answer = self._sts.assume_role(**self.settings.request())
        self.assumed_role_arn_ = answer["AssumedRoleUser"]["Arn"]
        self.assumptions_ += 1
        found = answer["Credentials"]
        return {"access_key": found["AccessKeyId"], "secret_key": found["SecretAccessKey"],
                "token": found["SessionToken"], "expiry_time": found["Expiration"].isoformat()}

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` in the site's account."""
        return self.session.client(service, endpoint_url=self.endpoint_url)

    def assume(self) -> None:
        """Assume the role now (at start, and again when the current session is refused)."""
        self.session = self._new_session()
        self.session.get_credentials().get_frozen_credentials()

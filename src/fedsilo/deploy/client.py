"""Talking to a site agent: AssumeRole, then the job calls, over verified TLS.

``SiteClient(endpoint, ca)`` holds the HTTPS connection (the site's CA pinned);
``assume_role`` signs the request with the caller's :class:`Identity` and returns a
:class:`SiteSession` whose methods mirror boto3's SageMaker client. Error bodies come back as
the exceptions of :mod:`fedsilo.deploy.errors`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from fedsilo.deploy.errors import DeployError, error_from_code
from fedsilo.deploy.identity import Identity
from fedsilo.deploy.sts import SIGNATURE_HEADER, signed_assume_role_request

__all__ = ["SiteClient", "SiteSession"]

CONNECT_RETRIES = 6


class SiteClient:
    """An HTTPS connection to one site agent whose certificate ``ca`` must vouch for."""

    def __init__(self, endpoint: str, ca: str | Path, *, site: str, timeout: float = 30.0
                 ) -> None:
        if not endpoint.startswith("https://"):
            raise ValueError(f"site endpoint {endpoint!r} must be https://; agents speak TLS only")
        self.endpoint = endpoint.rstrip("/")
        self.site = site
        context = ssl.create_default_context(cafile=str(ca))
        # An agent started a moment ago may not listen yet: a refused connection is tried
        # again (httpx waits 0.5, 1, 2, 4, 8 s; nothing was sent, so any request may repeat).
        transport = httpx.HTTPTransport(verify=context, retries=CONNECT_RETRIES)
        self.http = httpx.Client(base_url=self.endpoint, transport=transport, timeout=timeout)

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def assume_role(self, identity: Identity, role_arn: str, session_name: str,
                    duration_s: int = 900, *, external_id: str | None = None,
                    source_identity: str | None = None) -> SiteSession:
        body, signature = signed_assume_role_request(
            identity, role_arn=role_arn, session_name=session_name, site=self.site,
            duration_s=duration_s, external_id=external_id, source_identity=source_identity)
        answer = self._call("POST", "/sts/assume-role", content=body,
                            headers={SIGNATURE_HEADER: signature,
                                     "Content-Type": "application/json"})
        return SiteSession(self, answer["Credentials"])

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectionError(f"site {self.site} at {self.endpoint}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.is_error:
            if isinstance(payload, dict) and "code" in payload:
                raise error_from_code(payload["code"], f"site {self.site}: {payload['message']}")
            raise DeployError(f"site {self.site}: HTTP {response.status_code}: "
                              f"{response.text[:200]}")
        return dict(payload)


class SiteSession:
    """Calls made with one set of session credentials (boto3's SageMaker client, in shape)."""

    def __init__(self, client: SiteClient, credentials: dict[str, str]) -> None:
        self.client = client
        self.credentials = credentials

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials['SessionToken']}"}

    def create_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.client._call("POST", "/jobs", json=request, headers=self._auth)

    def describe_training_job(self, name: str) -> dict[str, Any]:
        return self.client._call("GET", f"/jobs/{name}", headers=self._auth)

    def stop_training_job(self, name: str) -> dict[str, Any]:
        return self.client._call("POST", f"/jobs/{name}/stop", headers=self._auth)

    def update_training_job(self, name: str, max_runtime_s: int) -> dict[str, Any]:
        return self.client._call("POST", f"/jobs/{name}/update", headers=self._auth,
                                 json={"StoppingCondition": {"MaxRuntimeInSeconds":
                                                             max_runtime_s}})

    def list_training_jobs(self) -> dict[str, Any]:
        return self.client._call("GET", "/jobs", headers=self._auth)

    def put_code(self, name: str, data: bytes) -> dict[str, Any]:
        """Upload an app archive (``apps/<hex>.tar.gz``) or its signature into the code store."""
        return self.client._call("PUT", f"/code/{name}", content=data,
                                 headers={**self._auth,
                                          "Content-Type": "application/octet-stream"})

    def get_log_events(self, name: str, start: int = 0) -> dict[str, Any]:
        return self.client._call("GET", f"/jobs/{name}/logs", params={"start": start},
                                 headers=self._auth)

"""AssumeRole and session tokens: trust by key or certificate, expiry, forgery, other sites."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

from fedsilo.deploy.authz import Authorizer
from fedsilo.deploy.certs import create_ca, issue_client_certificate
from fedsilo.deploy.credentials import issue_session_token, verify_session_token
from fedsilo.deploy.errors import (
    AccessDenied,
    AuthenticationError,
    DeployError,
    NotFound,
    ValidationError,
)
from fedsilo.deploy.identity import Identity, fingerprint, generate_signing_key
from fedsilo.deploy.roles import RoleStore, job_arn, launch_role_policy, role_arn, trust_policy
from fedsilo.deploy.sts import (
    FRESHNESS_S,
    AssumeRoleService,
    SeenSignatures,
    signed_assume_role_request,
)

SITE = "site1"
LAUNCH = role_arn(SITE, "FL-kickoff-client-job")
EXEC = role_arn(SITE, "service-role/FL-execution")


@pytest.fixture
def server_identity() -> Identity:
    return Identity(generate_signing_key())


@pytest.fixture
def store(tmp_path: Path, server_identity: Identity) -> RoleStore:
    path = tmp_path / "roles.json"
    path.write_text(json.dumps({
        "Roles": [{"RoleName": "FL-kickoff-client-job", "Arn": LAUNCH,
                   "MaxSessionDuration": 3600,
                   "AssumeRolePolicyDocument": trust_policy(
                       {"Key": [server_identity.key_fingerprint]}),
                   "Policies": [{"PolicyName": "a",
                                 "PolicyDocument": launch_role_policy(SITE, EXEC)}]}],
        "ExecutionRoles": [{"RoleName": "service-role/FL-execution", "Arn": EXEC}]}))
    return RoleStore(path)


@pytest.fixture
def sts(store: RoleStore) -> AssumeRoleService:
    return AssumeRoleService(SITE, store, generate_signing_key())


def _assume(sts: AssumeRoleService, identity: Identity, **kw: object) -> dict[str, object]:
    args: dict[str, object] = {"role_arn": LAUNCH, "session_name": "fl-session", "site": SITE}
    args.update(kw)
    body, sig = signed_assume_role_request(identity, **args)  # type: ignore[arg-type]
    return sts.assume_role(body, sig)


def test_trusted_key_gets_a_session_for_the_role(sts: AssumeRoleService,
                                                 server_identity: Identity) -> None:
    answer = _assume(sts, server_identity, duration_s=1200)
    creds = answer["Credentials"]
    assert isinstance(creds, dict)
    authz = Authorizer(SITE, sts.roles, sts.signing_key.public_key())
    session = authz.session(f"Bearer {creds['SessionToken']}")
    assert session.role.arn == LAUNCH
    assert session.claims.principal == server_identity.key_fingerprint
    assert 1190 < session.claims.expires_at - time.time() <= 1200
    authz.check(session, "job:CreateTrainingJob", job_arn(SITE, "j"))
    with pytest.raises(AccessDenied, match="not authorized to perform job:DeleteTrainingJob"):
        authz.check(session, "job:DeleteTrainingJob", job_arn(SITE, "j"))
    with pytest.raises(AccessDenied, match="iam:PassRole"):
        authz.check(session, "iam:PassRole", role_arn(SITE, "service-role/admin"))


def test_unknown_roles_and_untrusted_keys_get_the_same_answer(
        sts: AssumeRoleService, server_identity: Identity) -> None:
    """AccessDenied that names only what was asked for: not the site's roles, not its policy."""
    stranger = Identity(generate_signing_key())
    with pytest.raises(AccessDenied) as untrusted:
        _assume(sts, stranger)
    with pytest.raises(AccessDenied) as unknown:
        _assume(sts, server_identity, role_arn=role_arn(SITE, "admin"))
    assert str(untrusted.value) == (f"{stranger.key_fingerprint} is not authorized to perform "
                                    f"sts:AssumeRole on {LAUNCH}")
    assert str(unknown.value) == (f"{server_identity.key_fingerprint} is not authorized to "
                                  f"perform sts:AssumeRole on {role_arn(SITE, 'admin')}")
    assert LAUNCH not in str(unknown.value) and "trust" not in str(untrusted.value)


def test_certificate_principal_is_trusted_by_its_fingerprint(tmp_path: Path,
                                                             store: RoleStore) -> None:
    ca = create_ca("federation")
    cert_pem, key = issue_client_certificate(ca, "orchestrator")
    identity = Identity(key, cert_pem)
    raw = json.loads(store.path.read_text())
    raw["Roles"][0]["AssumeRolePolicyDocument"] = trust_policy(
        {"Certificate": [identity.principal["Certificate"]]})
    store.path.write_text(json.dumps(raw))
    service = AssumeRoleService(SITE, RoleStore(store.path), generate_signing_key())
    assert "Credentials" in _assume(service, identity)
    with pytest.raises(AccessDenied):  # the same key without its certificate is not named
        _assume(service, Identity(key))


def test_signature_must_match_body_audience_and_be_fresh(sts: AssumeRoleService,
                                                         server_identity: Identity) -> None:
    body, sig = signed_assume_role_request(server_identity, role_arn=LAUNCH,
                                           session_name="s1", site=SITE)
    tampered = body.replace(b"s1", b"s2")
    with pytest.raises(AuthenticationError, match="signature"):
        sts.assume_role(tampered, sig)
    with pytest.raises(AuthenticationError, match="X-Fedsilo-Signature"):
        sts.assume_role(body, None)
    sts.assume_role(body, sig)
    with pytest.raises(AuthenticationError, match="already used"):
        sts.assume_role(body, sig)  # replay
    with pytest.raises(AuthenticationError, match="site2"):
        _assume(sts, server_identity, site="site2")


def test_duration_is_bounded_by_the_role(sts: AssumeRoleService,
                                         server_identity: Identity) -> None:
    with pytest.raises(ValidationError, match="DurationSeconds"):
        _assume(sts, server_identity, duration_s=7200)


def test_expired_tampered_and_other_site_tokens_are_refused() -> None:
    key = generate_signing_key()
    token, _ = issue_session_token(key, site=SITE, role_arn=LAUNCH, session_name="s",
                                   principal="p", duration_s=900, now=time.time() - 1000)
    with pytest.raises(AuthenticationError, match="expired"):
        verify_session_token(token, key.public_key(), SITE)

    token, _ = issue_session_token(key, site=SITE, role_arn=LAUNCH, session_name="s",
                                   principal="p", duration_s=900)
    assert verify_session_token(token, key.public_key(), SITE).role_arn == LAUNCH
    prefix, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role_arn"] = role_arn(SITE, "admin")
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthenticationError, match="altered"):
        verify_session_token(f"{prefix}.{forged_body}.{sig}", key.public_key(), SITE)
    with pytest.raises(AuthenticationError, match="altered"):  # another site's key
        verify_session_token(token, generate_signing_key().public_key(), SITE)
    with pytest.raises(AuthenticationError, match="not 'site2'"):  # the right key, wrong site
        verify_session_token(token, key.public_key(), "site2")
    with pytest.raises(AuthenticationError, match="malformed"):
        verify_session_token("not-a-token", key.public_key(), SITE)


def test_fingerprints_differ_per_key() -> None:
    a, b = generate_signing_key(), generate_signing_key()
    assert fingerprint(a.public_key()) != fingerprint(b.public_key())
    assert fingerprint(a.public_key()).startswith("sha256:")


def _with_trust(store: RoleStore, trust: dict[str, object]) -> AssumeRoleService:
    raw = json.loads(store.path.read_text())
    raw["Roles"][0]["AssumeRolePolicyDocument"] = trust
    store.path.write_text(json.dumps(raw))
    return AssumeRoleService(SITE, RoleStore(store.path), generate_signing_key())


def test_a_partial_wildcard_principal_admits_nobody(store: RoleStore) -> None:
    """``{"Key": "sha256:*"}`` would admit any key; IAM refuses it, and so does the site: the
    document does not load, and no key gets a session from it."""
    service = _with_trust(store, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Key": "sha256:*"}}]})
    with pytest.raises(ValidationError, match="partial wildcard"):
        RoleStore(store.path).load()
    with pytest.raises(DeployError, match="every request is refused") as refused:
        _assume(service, Identity(generate_signing_key()))
    assert not isinstance(refused.value, ValidationError | NotFound)
    assert "sha256" not in str(refused.value)  # the caller learns nothing of the policy


def test_trust_conditions_see_external_id_and_source_identity(
        store: RoleStore, server_identity: Identity) -> None:
    service = _with_trust(store, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"Key": server_identity.key_fingerprint},
        "Condition": {"StringEquals": {"STS:ExternalID": "acme-42"},
                      "StringLike": {"aws:sourceidentity": "ops-*"}}}]})
    assert "Credentials" in _assume(service, server_identity, external_id="acme-42",
                                    source_identity="ops-alice")
    for external_id, source in (("acme-43", "ops-alice"), (None, "ops-alice"),
                                ("acme-42", "dev-bob"), ("acme-42", None)):
        with pytest.raises(AccessDenied):
            _assume(service, server_identity, external_id=external_id, source_identity=source)
    with pytest.raises(ValidationError, match="ExternalId"):
        _assume(service, server_identity, external_id="bad id with spaces")


def test_a_policy_broken_while_serving_fails_closed(store: RoleStore,
                                                    server_identity: Identity) -> None:
    """The site edits roles.json into something that does not load: the roles it held before
    are not used; every request is refused until the file is fixed."""
    service = AssumeRoleService(SITE, store, generate_signing_key())
    assert "Credentials" in _assume(service, server_identity)
    good = store.path.read_text()
    broken = json.loads(good)
    broken["Roles"][0]["Policies"][0]["PolicyDocument"]["Statement"][0].pop("Resource")
    store.path.write_text(json.dumps(broken))
    os.utime(store.path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a visibly newer file
    with pytest.raises(DeployError, match="every request is refused"):
        _assume(service, server_identity)
    store.path.write_text(good)
    os.utime(store.path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert "Credentials" in _assume(service, server_identity)


def test_a_request_signed_outside_the_window_is_refused(sts: AssumeRoleService,
                                                        server_identity: Identity,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A signature carries its time: one captured long ago (or dated ahead) is refused."""
    for skew in (-FRESHNESS_S - 5, FRESHNESS_S + 5):
        signed_at = time.time() + skew
        monkeypatch.setattr(time, "time", lambda at=signed_at: at)
        body, sig = signed_assume_role_request(server_identity, role_arn=LAUNCH,
                                               session_name="s1", site=SITE)
        monkeypatch.undo()
        with pytest.raises(AuthenticationError, match="signed .* s ago"):
            sts.assume_role(body, sig)


def test_a_replay_after_a_restart_is_refused(tmp_path: Path, store: RoleStore,
                                             server_identity: Identity) -> None:
    """The accepted signatures survive the service: a new one (an agent restarted) on the same
    site still refuses a request it accepted once."""
    seen = tmp_path / "state" / "seen.sqlite3"
    key = generate_signing_key()
    first = AssumeRoleService(SITE, store, key, SeenSignatures(seen))
    body, sig = signed_assume_role_request(server_identity, role_arn=LAUNCH,
                                           session_name="s1", site=SITE)
    assert "Credentials" in first.assume_role(body, sig)
    restarted = AssumeRoleService(SITE, RoleStore(store.path), key, SeenSignatures(seen))
    with pytest.raises(AuthenticationError, match="already used"):
        restarted.assume_role(body, sig)
    fresh_body, fresh_sig = signed_assume_role_request(server_identity, role_arn=LAUNCH,
                                                       session_name="s1", site=SITE)
    assert "Credentials" in restarted.assume_role(fresh_body, fresh_sig)

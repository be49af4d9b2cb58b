"""The site agent as a real HTTPS service: TLS, credentials, policy, jobs, restarts, no data."""

from __future__ import annotations

import json
import ssl
import time

import httpx
import pytest

from fedsilo.deploy.client import SiteSession
from fedsilo.deploy.credentials import issue_session_token
from fedsilo.deploy.errors import (
    AccessDenied,
    Conflict,
    NotFound,
    UnsafePathError,
    ValidationError,
)
from fedsilo.deploy.identity import Identity, generate_signing_key
from fedsilo.deploy.sts import SIGNATURE_HEADER, signed_assume_role_request

from .conftest import AgentProcess, SiteFactory, job_processes, job_request, wait_for

pytestmark = pytest.mark.slow


def _session(agent: AgentProcess, caller: Identity) -> SiteSession:
    return agent.client().assume_role(caller, agent.site.launch_role_arn(), "fl-test")


def _raw(agent: AgentProcess, method: str, path: str, token: str | None = None,
         headers: dict[str, str] | None = None, **kwargs: object) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    context = ssl.create_default_context(cafile=str(agent.site.ca_path))
    with httpx.Client(verify=context) as http:
        return http.request(method, agent.endpoint + path, headers=headers, **kwargs)  # type: ignore[arg-type]


def _ended(session: SiteSession, name: str) -> dict[str, object]:
    return wait_for(lambda: (d := session.describe_training_job(name))["TrainingJobStatus"]
                    in ("Completed", "Failed", "Stopped") and d, 30, f"job {name}")


def test_tls_only_and_the_sites_ca_is_required(make_site: SiteFactory, start_agent) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent(make_site())
    with pytest.raises(httpx.HTTPError):  # plain text gets no answer
        httpx.get(f"http://127.0.0.1:{agent.port}/health", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{agent.endpoint}/health", timeout=5)  # a CA that never signed the agent
    assert _raw(agent, "GET", "/health").json()["site"] == "site1"


def test_trust_policy_credentials_and_denied_actions(make_site: SiteFactory,  # type: ignore[no-untyped-def]
                                                     start_agent, caller: Identity) -> None:
    site = make_site()
    other = make_site("site2")
    agent, other_agent = start_agent(site), start_agent(other)
    client = agent.client()
    with pytest.raises(AccessDenied, match="not authorized to perform sts:AssumeRole"):
        client.assume_role(Identity(generate_signing_key()), site.launch_role_arn(), "intruder")
    # An unknown role: the same 403 as an untrusted key, naming none of the site's roles.
    body, signature = signed_assume_role_request(
        caller, role_arn="arn:fedsilo:iam::site1:role/admin", session_name="probe", site="site1")
    response = _raw(agent, "POST", "/sts/assume-role", content=body,
                    headers={SIGNATURE_HEADER: signature})
    assert response.status_code == 403 and response.json()["code"] == "AccessDeniedException"
    assert site.launch_role_arn() not in response.text
    session = client.assume_role(caller, site.launch_role_arn(), "fl-test")
    assert session.list_training_jobs() == {"TrainingJobSummaries": []}

    # No token, a forged one, one from another site, an expired one: 401 with the reason.
    assert _raw(agent, "GET", "/jobs").status_code == 401
    token = session.credentials["SessionToken"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert "altered" in _raw(agent, "GET", "/jobs", forged).json()["message"]
    foreign = _session(other_agent, caller).credentials["SessionToken"]
    response = _raw(agent, "GET", "/jobs", foreign)
    assert response.status_code == 401 and response.json()["code"] == "InvalidClientTokenId"
    expired, _ = issue_session_token(site.signing_key(), site="site1",
                                     role_arn=site.launch_role_arn(), session_name="old",
                                     principal=caller.key_fingerprint, duration_s=900,
                                     now=time.time() - 2000)
    assert "expired" in _raw(agent, "GET", "/jobs", expired).json()["message"]

    # Actions outside the policy: logs (not granted), PassRole of another role.
    session.create_training_job(job_request("job-1"))
    with pytest.raises(AccessDenied, match="logs:GetLogEvents") as denied:
        session.get_log_events("job-1")
    assert "statement" not in str(denied.value) and "TrainingJobs" not in str(denied.value)
    with pytest.raises(AccessDenied, match="iam:PassRole"):
        session.create_training_job(job_request(
            "job-2", role="arn:fedsilo:iam::site1:role/service-role/admin"))
    assert _ended(session, "job-1")["TrainingJobStatus"] == "Completed"


def test_no_route_returns_the_sites_data(make_site: SiteFactory, start_agent,  # type: ignore[no-untyped-def]
                                        caller: Identity) -> None:
    site = make_site(allow_logs=True)
    agent = start_agent(site)
    session = _session(agent, caller)
    session.create_training_job(job_request("job-1"))
    _ended(session, "job-1")
    token = session.credentials["SessionToken"]
    secret = "secret-site1-"
    spec = _raw(agent, "GET", "/openapi.json").json()
    routes = sorted(spec["paths"])
    assert routes == ["/code/apps/{file}", "/health", "/jobs", "/jobs/{job}",
                      "/jobs/{job}/logs", "/jobs/{job}/stop", "/jobs/{job}/update",
                      "/sts/assume-role"]  # the code route writes an app; it reads nothing
    probes = [path.replace("{job}", "job-1") for path in routes] + [
        "/channels/train", "/channels/train/rows.csv", "/jobs/..%2Fchannels%2Ftrain",
        "/jobs/job-1/..%2F..%2Fchannels%2Ftrain%2Frows.csv", "/artifacts", "/code",
        "/jobs/job-1/logs?start=0", "/docs", "/static/rows.csv"]
    for path in probes:
        for method in ("GET", "POST"):
            response = _raw(agent, method, path, token, json={})
            assert secret not in response.text, f"{method} {path} returned site data"
    log = session.get_log_events("job-1")  # granted: the program's own output only
    assert [e["message"] for e in log["events"]] == ["trained on 5 rows"]


def test_requests_that_leave_the_site_are_refused(make_site: SiteFactory, start_agent,  # type: ignore[no-untyped-def]
                                                  caller: Identity) -> None:
    site = make_site()
    make_site("site2")
    agent = start_agent(site)
    session = _session(agent, caller)
    with pytest.raises(UnsafePathError, match="'..'"):
        session.create_training_job(job_request(
            "job-x", channels={"train": "../../site2/channels/train"}))
    with pytest.raises(UnsafePathError, match="absolute"):
        session.create_training_job(job_request("job-y", output="/tmp"))
    with pytest.raises(ValidationError, match="TrainingJobName"):
        session.create_training_job(job_request("bad name"))
    with pytest.raises(NotFound):
        session.describe_training_job("job-never")
    response = _raw(agent, "POST", "/jobs", session.credentials["SessionToken"],
                    content=b"{not json")
    assert response.status_code == 400 and response.json()["code"] == "ValidationException"
    assert session.list_training_jobs()["TrainingJobSummaries"] == []


def test_lifecycle_through_the_agent_and_records_survive_a_restart(  # type: ignore[no-untyped-def]
        make_site: SiteFactory, start_agent, caller: Identity) -> None:
    site = make_site()
    agent = start_agent(site)
    session = _session(agent, caller)
    session.create_training_job(job_request("job-ok"))
    session.create_training_job(job_request("job-crash", program="crash.py"))
    session.create_training_job(job_request("job-long", program="polite.py"))
    done, crashed = _ended(session, "job-ok"), _ended(session, "job-crash")
    assert done["TrainingJobStatus"] == "Completed"
    assert (site.artifacts / "fl" / "job-ok" / "output" / "model.tar.gz").is_file()
    assert crashed["FailureReason"] == ("AlgorithmError: the program exited with code 3 (the "
                                        "job's log at the site: jobs/job-crash/output.log)")
    wait_for(lambda: session.describe_training_job("job-long")["SecondaryStatus"] == "Training")
    session.create_training_job(job_request("job-short", program="short.py",
                                            hyperparameters={"seconds": "1"}))
    wait_for(lambda: session.describe_training_job("job-short")["SecondaryStatus"] == "Training")

    agent.stop()
    wait_for((site.jobs / "job-short" / "exit.json").is_file, what="job-short to end")
    agent.start()  # same port, same site: a new process reads the records back
    session = _session(agent, caller)
    assert session.describe_training_job("job-ok") == done
    assert session.describe_training_job("job-crash") == crashed
    assert session.describe_training_job("job-long")["TrainingJobStatus"] == "InProgress"
    updated = session.update_training_job("job-long", 7200)
    assert updated["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    with pytest.raises(Conflict, match="only a job in progress"):
        session.update_training_job("job-ok", 7200)
    assert session.stop_training_job("job-long")["TrainingJobStatus"] == "Stopping"
    stopped = _ended(session, "job-long")
    assert stopped["TrainingJobStatus"] == "Stopped"
    assert not job_processes(str(site.jobs / "job-long"))
    # job-short ended while no agent ran: the new agent learns its outcome and packs its model.
    short = _ended(session, "job-short")
    assert short["TrainingJobStatus"] == "Completed", short
    assert "ModelArtifacts" in short
    names = [j["TrainingJobName"] for j in session.list_training_jobs()["TrainingJobSummaries"]]
    assert names == ["job-ok", "job-crash", "job-long", "job-short"]
    record = json.loads((site.jobs / "job-ok" / "record.json").read_text())
    assert record["status"] == "Completed"


def test_a_signed_assume_role_replayed_after_a_restart_is_refused(  # type: ignore[no-untyped-def]
        make_site: SiteFactory, start_agent, caller: Identity) -> None:
    """The request is captured on its way and sent again once the agent has restarted."""
    site = make_site()
    agent = start_agent(site)
    body, signature = signed_assume_role_request(caller, role_arn=site.launch_role_arn(),
                                                 session_name="fl-test", site="site1")
    first = _raw(agent, "POST", "/sts/assume-role", content=body,
                 headers={SIGNATURE_HEADER: signature})
    assert first.status_code == 200, first.text
    agent.stop()
    agent.start()
    replay = _raw(agent, "POST", "/sts/assume-role", content=body,
                  headers={SIGNATURE_HEADER: signature})
    assert replay.status_code == 401 and "already used" in replay.json()["message"]


def test_a_site_that_asks_an_external_id_admits_only_callers_that_send_it(  # type: ignore[no-untyped-def]
        make_site: SiteFactory, start_agent, caller: Identity, tmp_path) -> None:
    """The trust policy requires ``sts:ExternalId``; federation.toml's ``external_id`` reaches
    it through the launcher."""
    from fedsilo.deploy.federation_config import load_federation_config
    from fedsilo.deploy.launchers.local import LocalLauncher

    site = make_site()
    roles = json.loads(site.roles_path.read_text())
    roles["Roles"][0]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"] = {
        "StringEquals": {"sts:ExternalId": "acme-fl-42"}}
    site.roles_path.write_text(json.dumps(roles))
    agent = start_agent(site)
    (tmp_path / "federation.toml").write_text(f"""
[server]
address = "127.0.0.1:0"
certificates = "certs"
[app]
dir = "app"
server = "server:server_fn"
[identity]
key = "orchestrator.key"
[[sites]]
name = "site1"
endpoint = "{agent.endpoint}"
ca = "{site.ca_path}"
role = "{site.launch_role_arn()}"
execution_role = "{site.execution_role_arn()}"
source = "src/source.tar.gz"
external_id = "acme-fl-42"
""")
    (config_site,) = load_federation_config(tmp_path / "federation.toml").sites
    assert config_site.external_id == "acme-fl-42"
    admitted = LocalLauncher(site="site1", endpoint=agent.endpoint, ca=site.ca_path,
                             role_arn=site.launch_role_arn(), identity=caller, duration_s=900,
                             external_id=config_site.external_id)
    assert admitted.session().list_training_jobs() == {"TrainingJobSummaries": []}
    for wrong in (None, "acme-fl-43"):
        refused = LocalLauncher(site="site1", endpoint=agent.endpoint, ca=site.ca_path,
                                role_arn=site.launch_role_arn(), identity=caller,
                                duration_s=900, external_id=wrong)
        with pytest.raises(AccessDenied):
            refused.session()

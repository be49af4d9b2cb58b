"""The agent's audit log: every call recorded with its decision, rotated, read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsilo.cli.main import app
from fedsilo.deploy.audit import AuditEntry, AuditLog, read_audit
from fedsilo.deploy.errors import AccessDenied
from fedsilo.deploy.identity import Identity, generate_signing_key

from .conftest import SiteFactory, job_request, wait_for


def test_the_log_rotates_and_reads_back_in_order(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit" / "agent.jsonl", max_bytes=600, backups=3)
    for number in range(40):
        entry = AuditEntry("GET", f"/jobs/job-{number}")
        entry.check("job:DescribeTrainingJob", f"arn:fedsilo:job::s:training-job/{number}",
                    number % 2 == 0, "launch.actions.0" if number % 2 == 0 else None)
        log.write(entry)
    log.close()
    files = sorted(p.name for p in (tmp_path / "audit").iterdir())
    assert files == ["agent.jsonl", "agent.jsonl.1", "agent.jsonl.2", "agent.jsonl.3"]
    assert all(p.stat().st_size <= 600 for p in (tmp_path / "audit").iterdir())
    paths = [e["path"] for e in read_audit(tmp_path / "audit" / "agent.jsonl")]
    numbers = [int(str(p).rsplit("-", 1)[1]) for p in paths]
    assert numbers == list(range(40 - len(numbers), 40))  # the newest, oldest first, no gap
    assert 3 < len(numbers) < 40


@pytest.mark.slow
def test_every_call_to_the_agent_is_audited(  # type: ignore[no-untyped-def]
        make_site: SiteFactory, start_agent, caller: Identity) -> None:
    site = make_site()
    agent = start_agent(site)
    client = agent.client()
    stranger = Identity(generate_signing_key())
    with pytest.raises(AccessDenied):
        client.assume_role(stranger, site.launch_role_arn(), "intruder")
    session = client.assume_role(caller, site.launch_role_arn(), "fl-audit")
    session.create_training_job(job_request("job-audited"))
    with pytest.raises(AccessDenied):
        session.get_log_events("job-audited")

    def entries() -> list[dict[str, object]]:
        return [e for e in read_audit(site.audit_path) if e["path"] != "/health"]

    logged = wait_for(lambda: len(entries()) >= 4 and entries(), 10, "four audited calls")
    denied_assume, assume, create, logs = logged[:4]
    assert denied_assume["principal"] == stranger.key_fingerprint
    assert denied_assume["status"] == 403 and denied_assume["error"] == "AccessDeniedException"
    assert denied_assume["checks"] == [{"action": "sts:AssumeRole",
                                        "resource": site.launch_role_arn(),
                                        "decision": "Deny", "statement": None}]
    assert assume["status"] == 200 and assume["principal"] == caller.key_fingerprint
    assert assume["checks"][0]["statement"] == "FL-kickoff-client-job.trust.0"  # type: ignore[index]
    assert create["job"] == "job-audited" and create["session"] == "fl-audit"
    assert [(c["action"], c["decision"], c["statement"]) for c in create["checks"]] == [  # type: ignore[attr-defined]
        ("job:CreateTrainingJob", "Allow", "FL-kickoff-client-job.FL-job-actions.TrainingJobs"),
        ("iam:PassRole", "Allow", "FL-kickoff-client-job.FL-job-actions.PassExecutionRole")]
    assert logs["status"] == 403 and logs["checks"][0]["decision"] == "Deny"  # type: ignore[index]
    assert logs["role"] == site.launch_role_arn()

    result = CliRunner().invoke(app, ["site", "audit", str(site.root), "--last", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert "logs:GetLogEvents" in lines[-1] and "Deny" in lines[-1]
    result = CliRunner().invoke(app, ["site", "audit", str(site.root), "--json"])
    assert [json.loads(line) for line in result.output.splitlines()] == \
        list(read_audit(site.audit_path))


def test_the_commands_refuse_what_they_cannot_use_in_one_line(tmp_path: Path,
                                                              make_site: SiteFactory) -> None:
    result = CliRunner().invoke(app, ["site", "audit", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "is not a site" in result.output
    site = make_site()
    roles = json.loads(site.roles_path.read_text())
    roles["Roles"][0]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] = {
        "Key": "sha256:*"}
    site.roles_path.write_text(json.dumps(roles))
    result = CliRunner().invoke(app, ["site", "serve", str(site.root), "--port", "0"])
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.endswith("error: FL-kickoff-client-job.trust.Statement[0]: principal "
                         "'sha256:*' has a partial wildcard; a principal is exact, or '*' for "
                         "everyone")

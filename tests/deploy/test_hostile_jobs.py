"""A hostile job request or program against its own site: what it must not reach."""

from __future__ import annotations

import json
import os
import signal
import tarfile
import uuid
from pathlib import Path

import pytest

from fedsilo.deploy.errors import ValidationError
from fedsilo.deploy.identity import Identity
from fedsilo.deploy.jobspec import parse_job_request
from fedsilo.deploy.runner import JobRunner
from fedsilo.deploy.site import SiteLayout, namespaces_available

from .conftest import SiteFactory, job_processes, job_request, wait_for

needs_namespaces = pytest.mark.skipif(not namespaces_available(),
                                      reason="this machine forbids user namespaces (unshare)")


def _ended(runner: JobRunner, name: str, timeout: float = 60.0) -> dict[str, object]:
    return wait_for(lambda: (d := runner.describe(name))["TrainingJobStatus"] in
                    ("Completed", "Failed", "Stopped") and d, timeout, f"job {name} to end")


def _start_daemon_job(site: SiteLayout, runner: JobRunner, name: str, *, seconds: float = 300,
                      max_runtime: int = 600) -> str:
    """A job whose program leaves a setsid daemon; returns the marker its processes carry."""
    marker = f"mark-{uuid.uuid4().hex}"
    runner.create(parse_job_request(site, job_request(
        name, program="daemon.py", max_runtime=max_runtime,
        hyperparameters={"marker": marker, "seconds": str(seconds)})))
    wait_for((site.jobs / name / "output/data/forked").is_file, 60, "the daemon to be forked")
    wait_for(lambda: len(job_processes(marker)) >= 2, 30, "the daemon and its job to run")
    return marker


@pytest.mark.parametrize("key", [
    "train", "TRAIN", "identity", "spare", "model-dir", "model_dir", "Model.Dir", "output-dir",
    "output-data-dir", "SM_CHANNEL_TRAIN", "sm-model-dir", "channel-train", "hosts",
])
def test_hyperparameters_cannot_name_what_the_site_decides(make_site: SiteFactory,
                                                           key: str) -> None:
    """A channel's path or an output directory through ``--key value`` is refused at creation."""
    site, other = make_site("site1"), make_site("site2")
    (site.channels / "spare").mkdir()  # a channel of the site the request does not even use
    request = job_request("job-steal", program="argtrain.py",
                          hyperparameters={key: str(other.channels / "train")})
    with pytest.raises(ValidationError, match=f"hyperparameter {key!r} is reserved"):
        parse_job_request(site, request)


def test_the_channel_override_never_reaches_the_program(make_site: SiteFactory) -> None:
    """The attack as sent: ``--train`` at another site's channel. Refused; the honest request
    with the same program reads only its own channel."""
    site, other = make_site("site1"), make_site("site2")
    with pytest.raises(ValidationError, match="reserved"):
        parse_job_request(site, job_request("job-steal", program="argtrain.py",
                                            hyperparameters={"train": str(other.channels
                                                                          / "train")}))
    runner = JobRunner(site)
    runner.create(parse_job_request(site, job_request(
        "job-honest", program="argtrain.py", hyperparameters={"server-address": "h:1"})))
    described = wait_for(lambda: (d := runner.describe("job-honest"))["TrainingJobStatus"]
                         in ("Completed", "Failed") and d, 60, "the job to end")
    assert described["TrainingJobStatus"] == "Completed", described
    with tarfile.open(site.artifacts / "fl/job-honest/output/model.tar.gz") as tar:
        assert tar.extractfile("seen.txt").read() == b"0,secret-site1-0"  # type: ignore[union-attr]


@needs_namespaces
@pytest.mark.parametrize("how", ["stop", "max-runtime", "program-ends"])
def test_no_process_of_a_job_outlives_it(make_site: SiteFactory, how: str) -> None:
    """A double-forked setsid daemon that ignores SIGTERM dies with its job, however it ends."""
    site = make_site()
    runner = JobRunner(site, stop_grace_s=0.5)
    if how == "stop":
        marker = _start_daemon_job(site, runner, "job-daemon")
        runner.stop("job-daemon")
        expected = ("Stopped", "Stopped")
    elif how == "max-runtime":
        marker = _start_daemon_job(site, runner, "job-daemon", max_runtime=8)
        expected = ("Stopped", "MaxRuntimeExceeded")
    else:
        marker = _start_daemon_job(site, runner, "job-daemon", seconds=1)
        expected = ("Completed", "Completed")
    described = _ended(runner, "job-daemon")
    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == expected, described
    wait_for(lambda: not job_processes(marker), 10, "every process of the job to be gone")


@needs_namespaces
@pytest.mark.slow
def test_a_killed_agent_restarted_still_ends_the_whole_job(  # type: ignore[no-untyped-def]
        make_site: SiteFactory, start_agent, caller: Identity) -> None:
    """The agent dies (SIGKILL) under a running job; the new agent adopts it, and stopping it
    ends the daemon too. A second job times out under the new agent, with the same result."""
    site = make_site()
    agent = start_agent(site)
    session = agent.client().assume_role(caller, site.launch_role_arn(), "fl-test")
    markers = {}
    for name, runtime in (("job-stop", 600), ("job-time", 25)):
        markers[name] = f"mark-{uuid.uuid4().hex}"
        session.create_training_job(job_request(
            name, program="daemon.py", max_runtime=runtime,
            hyperparameters={"marker": markers[name], "seconds": "300"}))
    for name, marker in markers.items():
        wait_for(lambda m=marker: len(job_processes(m)) >= 2, 60, f"{name}'s daemon to run")
    agent.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    agent.process.wait(10)  # type: ignore[union-attr]
    assert all(job_processes(m) for m in markers.values())  # the jobs run on without it
    agent.start()
    session = agent.client().assume_role(caller, site.launch_role_arn(), "fl-test")
    session.stop_training_job("job-stop")
    for name in markers:
        described = wait_for(lambda n=name: (d := session.describe_training_job(n))[
            "TrainingJobStatus"] in ("Stopped", "Failed", "Completed") and d, 60, name)
        assert described["TrainingJobStatus"] == "Stopped", described
    assert session.describe_training_job("job-time")["SecondaryStatus"] == "MaxRuntimeExceeded"
    for marker in markers.values():
        wait_for(lambda m=marker: not job_processes(m), 10, "the jobs' processes to be gone")


def test_a_job_gets_a_clean_environment(make_site: SiteFactory,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what SageMaker gives (SM_*), the job's Context file and the request's Environment:
    nothing of the agent's."""
    monkeypatch.setenv("FEDSILO_AGENT_SECRET", "canary-of-the-agent")
    site = make_site()
    runner = JobRunner(site)
    request = {**job_request("job-env", program="env.py"), "Environment": {"MY_FLAG": "on"}}
    runner.create(parse_job_request(site, request))
    assert _ended(runner, "job-env")["TrainingJobStatus"] == "Completed"
    with tarfile.open(site.artifacts / "fl/job-env/output/model.tar.gz") as tar:
        env = json.loads(tar.extractfile("env.json").read())  # type: ignore[union-attr]
    assert "canary-of-the-agent" not in json.dumps(env)
    assert {k for k in env if not k.startswith("SM_")} <= {
        "MY_FLAG", "PATH", "PYTHONPATH", "LANG", "OMP_NUM_THREADS", "LC_CTYPE", "FEDSILO_CONTEXT"}
    assert env["FEDSILO_CONTEXT"] == str(site.jobs / "job-env" / "context.json")
    assert env["MY_FLAG"] == "on" and env["SM_CHANNEL_TRAIN"].endswith("channels/train")


@needs_namespaces
def test_an_isolated_job_reaches_nothing_of_its_site_or_machine(
        make_site: SiteFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default: keys, policy, TLS keys, channels it was not given, other jobs, another
    site, a CA key beside the sites and the agent's environment are all out of reach, directly,
    through links, or through /proc; it holds no capability and cannot change root."""
    monkeypatch.setenv("FEDSILO_AGENT_SECRET", "canary-of-the-agent")  # the agent is this process
    site, other = make_site("site1"), make_site("site2")
    (site.channels / "spare").mkdir()
    (site.channels / "spare" / "rows.csv").write_text("spare-rows")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.key").write_text("CA PRIVATE KEY")
    runner = JobRunner(site)
    runner.create(parse_job_request(site, job_request("job-first")))
    assert _ended(runner, "job-first")["TrainingJobStatus"] == "Completed"
    own_channel = site.channels / "train" / "rows.csv"
    targets = [site.signing_key_path, site.roles_path, site.tls / "agent.key",
               site.channels / "identity" / "client.key", site.channels / "spare" / "rows.csv",
               other.channels / "train" / "rows.csv", other.signing_key_path,
               site.jobs / "job-first" / "record.json", site.jobs / "job-first" / "output.log",
               site.jobs / "job-hostile" / "record.json", site.config_path,
               tmp_path / "certs" / "ca.key", Path(f"/proc/{os.getpid()}/environ"),
               Path("/etc/shadow"), own_channel]
    runner.create(parse_job_request(site, job_request(
        "job-hostile", program="hostile.py", channels={"train": "train"},
        hyperparameters={"targets": json.dumps([str(t) for t in targets]),
                         "needle": "FEDSILO_AGENT_"})))
    described = _ended(runner, "job-hostile")
    assert described["TrainingJobStatus"] == "Completed", described
    report = json.loads((site.jobs / "job-hostile/output/data/report.json").read_text())
    for target in targets[:-1]:
        for how in ("direct", "link"):
            assert report[f"{how}:{target}"] in ("FileNotFoundError", "PermissionError"), \
                (how, target, report[f"{how}:{target}"])
    assert report[f"direct:{own_channel}"] == "read:" + own_channel.read_bytes()[:64].hex()
    assert report["environ-hits"] == []
    assert report["chroot"] == "PermissionError" and int(report["CapEff"], 16) == 0
    assert report["umount"] == report["mount"] == "Operation not permitted"
    assert report["write-channel"] == "Read-only file system"
    assert not (site.channels / "train" / "planted.csv").exists()
    with tarfile.open(site.artifacts / "fl/job-hostile/output/model.tar.gz") as tar:
        assert tar.getnames() == []  # its links are not packed, let alone followed


@needs_namespaces
def test_a_site_that_opts_out_still_hides_the_agents_processes(
        make_site: SiteFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without isolation the job reads what the agent's user can (the documented limit), but it
    still runs in its own PID namespace: the agent's environment is not in its /proc."""
    monkeypatch.setenv("FEDSILO_AGENT_SECRET", "canary-of-the-agent")
    site = make_site(isolate_jobs=False)
    runner = JobRunner(site)
    targets = [site.signing_key_path, Path(f"/proc/{os.getpid()}/environ")]
    runner.create(parse_job_request(site, job_request(
        "job-hostile", program="hostile.py",
        hyperparameters={"targets": json.dumps([str(t) for t in targets]),
                         "needle": "FEDSILO_AGENT_"})))
    assert _ended(runner, "job-hostile")["TrainingJobStatus"] == "Completed"
    report = json.loads((site.jobs / "job-hostile/output/data/report.json").read_text())
    assert report[f"direct:{site.signing_key_path}"].startswith("read:")
    assert report[f"direct:/proc/{os.getpid()}/environ"] in ("FileNotFoundError",
                                                              "PermissionError")
    assert report["environ-hits"] == []


@pytest.mark.slow
def test_site_serve_warns_when_jobs_are_not_isolated(  # type: ignore[no-untyped-def]
        make_site: SiteFactory, start_agent) -> None:
    open_site, isolated = make_site("site1", isolate_jobs=False), make_site("site2")
    for site in (open_site, isolated):
        start_agent(site)
    logs = {p.name.split("-")[1]: p.read_text() for p in open_site.root.parent.glob("agent-*")}
    assert "jobs at site site1 are NOT isolated" in logs["site1"]
    assert "NOT isolated" not in logs["site2"]


def test_where_namespaces_are_forbidden_an_isolating_site_runs_nothing(
        make_site: SiteFactory) -> None:
    """On a machine without user namespaces (as the runner finds it), a site that isolates
    fails its jobs rather than run them unisolated; a site that opted out runs them in a
    process group, as documented."""
    isolating, open_site = make_site("site1"), make_site("site2", isolate_jobs=False)
    for site in (isolating, open_site):
        runner = JobRunner(site)
        runner.contained = False  # what containment_available() answers on such a machine
        runner.create(parse_job_request(site, job_request("job-plain")))
        described = _ended(runner, "job-plain")
        if site is isolating:
            assert described["TrainingJobStatus"] == "Failed"
            assert "does not allow user, PID and mount namespaces" in str(
                described["FailureReason"])
            assert not (site.jobs / "job-plain" / "output.log").exists()  # never started
        else:
            assert described["TrainingJobStatus"] == "Completed", described


@pytest.mark.parametrize("isolate", [True, False])
def test_a_failure_file_linked_to_the_sites_key_is_not_read(make_site: SiteFactory,
                                                            isolate: bool) -> None:
    """The reason a failed job gives is sent to the caller: a ``failure`` that is a link (to the
    site's signing key, which the agent can read) is not followed, isolated or not."""
    site = make_site(isolate_jobs=isolate)
    runner = JobRunner(site)
    runner.create(parse_job_request(site, job_request(
        "job-pointer", program="pointer.py",
        hyperparameters={"target": str(site.signing_key_path)})))
    described = _ended(runner, "job-pointer")
    assert (site.jobs / "job-pointer/output/failure").is_symlink()
    assert described["FailureReason"] == ("AlgorithmError: the program exited with code 1 (the "
                                          "job's log at the site: jobs/job-pointer/output.log)")
    assert "PRIVATE KEY" not in json.dumps(described)


@needs_namespaces
def test_a_job_dies_whole_with_its_wrapper(make_site: SiteFactory) -> None:
    """A service manager that kills the agent with everything it started kills the job's
    wrapper: the namespace goes with it (nothing is left for the next agent to find), and the
    next agent records the job Failed."""
    site = make_site()
    runner = JobRunner(site)
    marker = _start_daemon_job(site, runner, "job-orphan")
    assert runner.describe("job-orphan")["TrainingJobStatus"] == "InProgress"
    pid = json.loads((site.jobs / "job-orphan" / "record.json").read_text())["pid"]  # wrapper
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not job_processes(marker), 15, "every process of the job to be gone")
    described = _ended(JobRunner(site), "job-orphan")
    assert described["TrainingJobStatus"] == "Failed", described

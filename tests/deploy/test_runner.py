"""The job runner on real processes: script mode, lifecycle, limits, stopping, restarts."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import psutil
import pytest

from fedsilo.deploy.errors import Conflict, NotFound, UnsafePathError, ValidationError
from fedsilo.deploy.jobspec import parse_job_request
from fedsilo.deploy.runner import JobRunner
from fedsilo.deploy.site import SiteLayout

from .conftest import SiteFactory, job_request, wait_for, write_tarball


def _done(runner: JobRunner, name: str, timeout: float = 30.0) -> dict[str, object]:
    return wait_for(lambda: (d := runner.describe(name))["TrainingJobStatus"] in
                    ("Completed", "Failed", "Stopped") and d, timeout, f"job {name} to end")


def _artifact(site: SiteLayout, description: dict[str, object]) -> Path:
    location = description["ModelArtifacts"]["S3ModelArtifacts"]  # type: ignore[index]
    prefix = f"site://{site.name}/"
    assert location.startswith(prefix)
    return site.root / location.removeprefix(prefix)


def test_script_mode_job_completes_and_packs_its_model(make_site: SiteFactory) -> None:
    site = make_site(rows=7)
    runner = JobRunner(site)
    runner.create(parse_job_request(site, job_request(
        "job-ok", hyperparameters={"epochs": "4", "lr": "0.5"})))
    described = _done(runner, "job-ok")
    assert described["TrainingJobStatus"] == "Completed", described
    statuses = [t["Status"] for t in described["SecondaryStatusTransitions"]]  # type: ignore
    assert statuses == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    archive = _artifact(site, described)
    assert archive == site.artifacts / "fl" / "job-ok" / "output" / "model.tar.gz"
    with tarfile.open(archive) as tar:
        model = json.loads(tar.extractfile("model.json").read())  # type: ignore[union-attr]
    assert model == {"epochs": "4", "lr": "0.5", "n_rows": 7,
                     "hps": {"epochs": "4", "lr": "0.5"}, "channels": ["train"]}
    assert "trained on 7 rows" in (site.jobs / "job-ok" / "output.log").read_text()
    assert not (site.jobs / "job-ok" / "code").exists()  # gone with the job, as a container


def test_crash_is_failed_with_exit_code_and_program_reason(make_site: SiteFactory) -> None:
    site = make_site()
    runner = JobRunner(site)
    runner.create(parse_job_request(site, job_request("job-crash", program="crash.py")))
    runner.create(parse_job_request(site, job_request("job-explain", program="explain.py")))
    crash, explain = _done(runner, "job-crash"), _done(runner, "job-explain")
    assert crash["TrainingJobStatus"] == "Failed"
    assert crash["FailureReason"] == ("AlgorithmError: the program exited with code 3 (the "
                                      "job's log at the site: jobs/job-crash/output.log)")
    assert "about to fail" not in str(crash)  # the log is named, never copied into the answer
    assert explain["FailureReason"] == ("AlgorithmError: ValueError: no fraud rows (the job's "
                                        "log at the site: jobs/job-explain/output.log)")
    assert "ModelArtifacts" not in crash


def test_max_runtime_stops_the_job(make_site: SiteFactory) -> None:
    site = make_site()
    runner = JobRunner(site, stop_grace_s=0.5)
    runner.create(parse_job_request(site, job_request("job-slow", program="sleep.py",
                                                      max_runtime=1)))
    described = _done(runner, "job-slow")
    assert described["TrainingJobStatus"] == "Stopped"
    assert described["SecondaryStatus"] == "MaxRuntimeExceeded"
    pids = [int(p) for p in (site.jobs / "job-slow/output/data/pids").read_text().split()]
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                   for p in pids)
    with tarfile.open(_artifact(site, described)) as tar:  # what it saved is kept
        assert tar.getnames() == ["partial.txt"]


def test_stop_waits_for_grace_then_kills_the_whole_family(make_site: SiteFactory) -> None:
    site = make_site()
    runner = JobRunner(site, stop_grace_s=0.5)
    runner.create(parse_job_request(site, job_request("job-stubborn", program="sleep.py")))
    runner.create(parse_job_request(site, job_request("job-polite", program="polite.py")))
    pid_file = site.jobs / "job-stubborn/output/data/pids"
    wait_for(pid_file.is_file, what="the stubborn job to start")
    wait_for((site.jobs / "job-polite/output/data/pids").is_file, what="the polite job")
    pids = [int(p) for p in pid_file.read_text().split()]
    assert runner.stop("job-stubborn")["TrainingJobStatus"] == "Stopping"
    runner.stop("job-polite")
    stubborn, polite = _done(runner, "job-stubborn"), _done(runner, "job-polite")
    assert stubborn["TrainingJobStatus"] == polite["TrainingJobStatus"] == "Stopped"
    for pid in pids:  # SIGTERM was ignored: the grace ran out and the group was killed
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    with tarfile.open(_artifact(site, polite)) as tar:  # SIGTERM let it save its model
        assert "saved-on-term.txt" in tar.getnames()
    with pytest.raises(Conflict, match="only a job in progress"):
        runner.stop("job-stubborn")


def test_records_survive_a_new_runner(make_site: SiteFactory) -> None:
    """Finished jobs read back as they were (adopting running jobs: see test_agent)."""
    site = make_site()
    first = JobRunner(site)
    first.create(parse_job_request(site, job_request("job-done")))
    first.create(parse_job_request(site, job_request("job-crash", program="crash.py")))
    _done(first, "job-done"), _done(first, "job-crash")
    second = JobRunner(site)  # as after an agent restart: reads the records from disk
    for name in ("job-done", "job-crash"):
        assert second.describe(name) == first.describe(name)
    with pytest.raises(Conflict, match="already exists"):
        second.create(parse_job_request(site, job_request("job-done")))
    assert [j["TrainingJobName"] for j in second.list()] == ["job-done", "job-crash"]


def test_requirements_the_site_lacks_fail_the_job(make_site: SiteFactory) -> None:
    site = make_site()
    write_tarball(site.code / "src" / "needs.tar.gz", {
        "train.py": "print('never runs')\n",
        "requirements.txt": "numpy\nno-such-package-fedsilo==1.0\n"})
    runner = JobRunner(site)
    runner.create(parse_job_request(site, job_request("job-req", source="src/needs.tar.gz")))
    described = _done(runner, "job-req")
    assert described["TrainingJobStatus"] == "Failed"
    assert "no-such-package-fedsilo==1.0" in described["FailureReason"]  # type: ignore


@pytest.mark.parametrize(("field", "value", "error"), [
    ("source", "../site2/code/src/source.tar.gz", UnsafePathError),
    ("source", "/etc/passwd", UnsafePathError),
    ("program", "../../escape.py", UnsafePathError),
    ("output", "../../site2/artifacts", UnsafePathError),
    ("output", "/tmp/out", UnsafePathError),
    ("channels", {"train": "../../site2/channels/train"}, UnsafePathError),
    ("channels", {"train": "/"}, UnsafePathError),
    ("channels", {"train": "missing"}, NotFound),
    ("source", "src/missing.tar.gz", NotFound),
])
def test_requests_that_point_outside_the_site_are_refused(
        make_site: SiteFactory, field: str, value: object, error: type[Exception]) -> None:
    site = make_site()
    make_site("site2")
    with pytest.raises(error):
        parse_job_request(site, job_request("job-bad", **{field: value}))  # type: ignore


def test_a_linked_channel_cannot_reach_another_sites_data(make_site: SiteFactory) -> None:
    site, other = make_site("site1"), make_site("site2")
    (site.channels / "borrowed").symlink_to(other.channels / "train")
    with pytest.raises(UnsafePathError, match="through a link"):
        parse_job_request(site, job_request("job-link", channels={"train": "borrowed"}))


@pytest.mark.parametrize(("patch", "message"), [
    ({"TrainingJobName": "bad_name!"}, "TrainingJobName"),
    ({"TrainingJobName": "x" * 64}, "TrainingJobName"),
    ({"HyperParameters": {"a": "1"}}, "sagemaker_program"),
    ({"HyperParameters": {"a": 1}}, "must be a string"),
    ({"StoppingCondition": {"MaxRuntimeInSeconds": 0}}, "MaxRuntimeInSeconds"),
    ({"ResourceConfig": {"InstanceCount": 2}}, "InstanceCount"),
    ({"Environment": {"SM_MODEL_DIR": "/"}}, "may not set"),
    ({"Surprise": 1}, "unknown fields"),
])
def test_malformed_requests_are_refused_with_the_field(make_site: SiteFactory,
                                                       patch: dict[str, object],
                                                       message: str) -> None:
    site = make_site()
    with pytest.raises(ValidationError, match=message):
        parse_job_request(site, {**job_request("job-x"), **patch})


def test_an_isolated_job_cannot_open_another_sites_files(make_site: SiteFactory) -> None:
    """With job isolation, another site's channel is not there for the job, by any path."""
    from fedsilo.deploy.site import namespaces_available

    if not namespaces_available():
        pytest.skip("this machine forbids unprivileged user namespaces (unshare)")
    isolated, open_site = make_site("site1", isolate_jobs=True), make_site("site3")
    other = make_site("site2")
    secret = other.channels / "train" / "rows.csv"
    for site in (isolated, open_site):
        runner = JobRunner(site)
        runner.create(parse_job_request(site, job_request(
            "job-peek", program="peek.py", hyperparameters={"target": str(secret)})))
        described = _done(runner, "job-peek")
        assert described["TrainingJobStatus"] == "Completed", described
        with tarfile.open(_artifact(site, described)) as tar:
            seen = tar.extractfile("peek.txt").read().decode()  # type: ignore[union-attr]
        own_rows, what = seen.split("|", 1)
        assert own_rows == "5"  # its own channel, as given
        if site is isolated:
            assert what == "FileNotFoundError"
        else:  # without isolation the operating system does not stop it: the documented limit
            assert "secret-site2-" in what
    assert secret.read_text().startswith("0,secret-site2-0")  # untouched

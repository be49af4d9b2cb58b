"""Runs a user starts and stops: Ctrl-C, a job that fails, and what the logs show.

Everything runs through the console script in a fresh working directory with relative paths.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.test_docs import deployment_walkthrough, run_shell

SCRIPT = Path(sys.executable).with_name("fedsilo")


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (the run's work directory)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            line = " ".join(proc.info["cmdline"] or [])
            if proc.pid != os.getpid() and (text in line or text in (proc.info["cwd"] or "")):
                found.append(line)
        except psutil.Error:
            continue
    return found


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until_gone(text: str, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.slow
def test_ctrl_c_during_the_demo_stops_everything_and_exits_130(tmp_path: Path) -> None:
    # A terminal's Ctrl-C goes to the whole foreground process group: do the same.
    # Unbuffered, so "round 2" is read when it is printed, not with the run's last lines.
    demo = subprocess.Popen([str(SCRIPT), "demo", "--rounds", "300"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            # A shell that started us in the background left SIGINT ignored,
                            # and an ignored signal stays ignored in children: undo that, as a
                            # terminal's shell does for the program in its foreground.
                            preexec_fn=_default_sigint)
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:
        seen.append(line)
        if line.startswith("round 2/300"):
            os.killpg(demo.pid, signal.SIGINT)
            break
    out, err = demo.communicate(timeout=120)
    assert demo.returncode == 130, "".join(seen) + out + err
    assert out.strip().splitlines() == [
        "interrupted: the site agents and their jobs were stopped"], out
    assert err == "", err  # no warnings about refused connections or message limits
    work = tmp_path / "fedsilo-demo"
    assert not (work / "history.json").exists()  # the run did not finish or save
    assert wait_until_gone(str(work)) == []
    records = [json.loads(p.read_text()) for p in (work / "sites").rglob("record.json")]
    assert len(records) == 3
    assert {r["status"] for r in records} == {"Stopped"}, records
    # The rounds the server took after Ctrl-C: none aggregated past the one in progress.
    assert not any(line.startswith("round 300/300") for line in out.splitlines())


@pytest.mark.slow
def test_a_failing_job_shows_the_sites_reason_and_its_log(tmp_path: Path) -> None:
    script, toml = deployment_walkthrough()
    # site2 lets the orchestrator read job logs, and its data is not what the program reads.
    script = script.replace("--name site2", "--name site2 --allow-logs")
    script = script.replace("fedsilo site add-channel sites/site2 train data/site2",
                            "mkdir broken && echo 'not,the,columns' > broken/train.csv && "
                            "fedsilo site add-channel sites/site2 train broken")
    (tmp_path / "federation.toml").write_text(toml)
    done = run_shell(script, tmp_path, timeout=600)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        "fedsilo federate: error: site site2 failed: job fl-site2-")
    assert "Traceback" not in done.stderr
    out = done.stdout
    reason = next(line for line in out.splitlines() if line.startswith("site site2 failed:"))
    assert "Failed: AlgorithmError" in reason
    assert "the job's log at the site: jobs/fl-site2-" in reason
    assert "last lines of the job's log" in out
    tail = [line for line in out.splitlines() if line.startswith("  | ")]
    assert 1 <= len(tail) <= 15
    assert any("Error" in line for line in tail), tail
    job_logs = list((tmp_path / "sites" / "site2" / "jobs").glob("*/output.log"))
    assert len(job_logs) == 1
    assert tail[-1][4:].strip() in job_logs[0].read_text()
    assert wait_until_gone(str(tmp_path)) == []


@pytest.mark.slow
def test_verbose_shows_fedsilos_log_and_not_every_http_request(tmp_path: Path) -> None:
    done = subprocess.run([str(SCRIPT), "demo", "--rounds", "1", "--verbose"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert " fedsilo.server INFO " in done.stderr
    assert "HTTP Request" not in done.stderr and "httpx" not in done.stderr
    quiet = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True,
                           timeout=60)
    assert quiet.stdout.startswith("fedsilo ") and quiet.returncode == 0

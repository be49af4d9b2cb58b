"""Sites, source tarballs and job requests for the deployment tests."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fedsilo.deploy.identity import Identity, generate_signing_key
from fedsilo.deploy.sandbox import SiteAgentProcess as AgentProcess
from fedsilo.deploy.site import SiteLayout, init_site

from .aws_strict import StrictRequests


def write_tarball(path: Path, files: dict[str, str]) -> Path:
    """A .tar.gz holding ``files`` (name to text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def job_request(name: str, *, program: str = "train.py", source: str = "src/source.tar.gz",
                channels: dict[str, str] | None = None, max_runtime: int = 60,
                hyperparameters: dict[str, str] | None = None,
                role: str = "arn:fedsilo:iam::site1:role/service-role/FL-execution",
                output: str = "fl") -> dict[str, Any]:
    """A CreateTrainingJob-shaped request for a local site."""
    return {
        "TrainingJobName": name,
        "HyperParameters": {**(hyperparameters or {}), "sagemaker_program": program,
                            "sagemaker_submit_directory": source},
        "AlgorithmSpecification": {"TrainingImage": "python", "TrainingInputMode": "File"},
        "RoleArn": role,
        "InputDataConfig": [{"ChannelName": ch, "DataSource": {"SiteDataSource": {"Path": p}}}
                            for ch, p in (channels or {"train": "train"}).items()],
        "OutputDataConfig": {"OutputPath": output},
        "ResourceConfig": {"InstanceType": "local", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
    }


# Programs run as jobs. Each reads what script mode gives it and leaves evidence behind.
PROGRAMS = {
    "train.py": """
import argparse, json, os, pathlib
p = argparse.ArgumentParser()
p.add_argument("--epochs"); p.add_argument("--lr")
a = p.parse_args()
rows = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"], "rows.csv").read_text().splitlines()
model = pathlib.Path(os.environ["SM_MODEL_DIR"])
(model / "model.json").write_text(json.dumps({
    "epochs": a.epochs, "lr": a.lr, "n_rows": len(rows), "hps": json.loads(os.environ["SM_HPS"]),
    "channels": json.loads(os.environ["SM_CHANNELS"])}))
print("trained on", len(rows), "rows")
""",
    "crash.py": "import sys\nprint('about to fail')\nraise SystemExit(3)\n",
    "explain.py": """
import os, pathlib
pathlib.Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text("ValueError: no fraud rows")
raise SystemExit(1)
""",
    "sleep.py": """
import os, pathlib, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # makes the stop wait for its grace, then kill
child = subprocess.Popen([sys.executable, "-c", "import signal, time;"
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)",
                          os.environ["SM_MODEL_DIR"]])  # the job's path: job_processes finds it
pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "pids").write_text(f"{os.getpid()} {child.pid}")
pathlib.Path(os.environ["SM_MODEL_DIR"], "partial.txt").write_text("checkpoint")
time.sleep(120)
""",
    "polite.py": """
import os, pathlib, signal, sys, time
def bye(*_):
    pathlib.Path(os.environ["SM_MODEL_DIR"], "saved-on-term.txt").write_text("bye")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "pids").write_text(str(os.getpid()))
time.sleep(120)
""",
    "peek.py": """
import argparse, os, pathlib
p = argparse.ArgumentParser(); p.add_argument("--target"); a = p.parse_args()
own = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"], "rows.csv").read_text().splitlines()
try:
    seen = pathlib.Path(a.target).read_text()
except OSError as exc:
    seen = type(exc).__name__
pathlib.Path(os.environ["SM_MODEL_DIR"], "peek.txt").write_text(f"{len(own)}|{seen}")
""",
    "argtrain.py": """
import argparse, os, pathlib
p = argparse.ArgumentParser()
p.add_argument("--train", default=os.environ["SM_CHANNEL_TRAIN"])
p.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
a, _ = p.parse_known_args()
rows = pathlib.Path(a.train, "rows.csv").read_text().splitlines()
pathlib.Path(a.model_dir, "seen.txt").write_text(rows[0])
""",
    # Leaves a daemon behind: fork, setsid, fork again; the grandchild's parent is then PID 1.
    # Every process carries the marker in its command line, for job_processes() to find.
    "daemon.py": """
import os, pathlib, sys, time
marker = sys.argv[sys.argv.index("--marker") + 1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c",
                                  "import signal, time; signal.signal(signal.SIGTERM, "
                                  "signal.SIG_IGN); time.sleep(600)", marker, "daemon"])
    os._exit(0)
os.wait()
pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "forked").write_text("")
time.sleep(float(sys.argv[sys.argv.index("--seconds") + 1]))
""",
    "env.py": """
import json, os, pathlib
pathlib.Path(os.environ["SM_MODEL_DIR"], "env.json").write_text(json.dumps(dict(os.environ)))
""",
    # Tries every path it is given, directly and through a link it makes, and looks for the
    # agent's environment in every process it can see; reports what it got.
    "hostile.py": """
import argparse, ctypes, json, os, pathlib
p = argparse.ArgumentParser(); p.add_argument("--targets"); p.add_argument("--needle")
a = p.parse_args()
model = pathlib.Path(os.environ["SM_MODEL_DIR"])
report = {}
for i, target in enumerate(json.loads(a.targets)):
    link = model / f"link-{i}"
    link.symlink_to(target)
    for how, path in (("direct", target), ("link", link)):
        try:
            report[f"{how}:{target}"] = "read:" + pathlib.Path(path).read_bytes()[:64].hex()
        except OSError as exc:
            report[f"{how}:{target}"] = type(exc).__name__
needle = (a.needle + "SECRET=").encode()
report["environ-hits"] = []
for entry in pathlib.Path("/proc").iterdir():
    try:
        if entry.name.isdigit() and needle in (entry / "environ").read_bytes():
            report["environ-hits"].append(entry.name)
    except OSError:
        pass
try:
    pathlib.Path(os.environ["SM_CHANNEL_TRAIN"], "planted.csv").write_text("x")
    report["write-channel"] = "allowed"
except OSError as exc:
    report["write-channel"] = os.strerror(exc.errno)
libc = ctypes.CDLL(None, use_errno=True)
channel = os.environ["SM_CHANNEL_TRAIN"].encode()
report["umount"] = "allowed" if libc.umount2(channel, 2) == 0 else os.strerror(ctypes.get_errno())
report["mount"] = ("allowed" if libc.mount(b"none", channel, b"tmpfs", 0, None) == 0
                   else os.strerror(ctypes.get_errno()))
try:
    os.chroot("/")
    report["chroot"] = "allowed"
except OSError as exc:
    report["chroot"] = type(exc).__name__
status = pathlib.Path("/proc/self/status").read_text()
report["CapEff"] = next(l.split()[1] for l in status.splitlines() if l.startswith("CapEff"))
pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "report.json").write_text(json.dumps(report))
""",
    "pointer.py": """
import os, pathlib, sys
failure = pathlib.Path(os.environ["SM_OUTPUT_DIR"], "failure")
failure.symlink_to(sys.argv[sys.argv.index("--target") + 1])
raise SystemExit(1)
""",
    "short.py": "import time\ntime.sleep(float(__import__('sys').argv[2]))\n",
    "requirements.txt": "numpy>=1.0\n",
}


def job_processes(marker: str) -> list[int]:
    """Live processes (zombies left out) whose command line holds ``marker``, found by walking
    /proc: what a job left running, whatever its parent, session or process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


@pytest.fixture
def caller() -> Identity:
    """The federation's key, trusted by the sites that :func:`make_site` creates."""
    return Identity(generate_signing_key())


SiteFactory = Callable[..., SiteLayout]


@pytest.fixture
def make_site(tmp_path: Path, caller: Identity) -> SiteFactory:
    def make(name: str = "site1", *, rows: int = 5, allow_logs: bool = False,
             trusted: Identity | None = None, isolate_jobs: bool = True,
             allow_code_upload: bool = False,
             node_config: dict[str, Any] | None = None) -> SiteLayout:
        who = trusted or caller
        site = init_site(tmp_path / name, name, trusted={"Key": [who.key_fingerprint]},
                         allow_logs=allow_logs, isolate_jobs=isolate_jobs,
                         allow_code_upload=allow_code_upload, node_config=node_config)
        (site.channels / "train").mkdir()
        (site.channels / "train" / "rows.csv").write_text(
            "\n".join(f"{i},secret-{name}-{i}" for i in range(rows)))
        write_tarball(site.code / "src" / "source.tar.gz", PROGRAMS)
        return site

    return make


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "it") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[[SiteLayout], AgentProcess]]:
    agents: list[AgentProcess] = []

    def start(site: SiteLayout) -> AgentProcess:
        from tests.conftest import free_port

        log = tmp_path / f"agent-{site.name}-{len(agents)}.log"
        agent = AgentProcess(site, free_port(), log).start()
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``moto_server`` (AWS services, in memory) on a free port of 127.0.0.1."""
    from tests.conftest import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")),
                                    "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=handle, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"moto_server exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{endpoint}/moto-api/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 30, "moto_server")
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(autouse=True)
def strict_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[StrictRequests]:
    """Every boto3 request of the test checked against its service model (see aws_strict).

    A test that sends a bad request on purpose empties ``violations`` after checking them.
    """
    strict = StrictRequests().install(monkeypatch)
    yield strict
    assert strict.violations == [], f"requests the service would refuse: {strict.violations}"

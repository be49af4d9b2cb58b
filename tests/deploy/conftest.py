"""Sites, source tarballs and job requests for the deployment tests."""

from __future__ import annotations

import io
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
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
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
    "short.py": "import time\ntime.sleep(float(__import__('sys').argv[2]))\n",
    "requirements.txt": "numpy>=1.0\n",
}


@pytest.fixture
def caller() -> Identity:
    """The federation's key, trusted by the sites that :func:`make_site` creates."""
    return Identity(generate_signing_key())


SiteFactory = Callable[..., SiteLayout]


@pytest.fixture
def make_site(tmp_path: Path, caller: Identity) -> SiteFactory:
    def make(name: str = "site1", *, rows: int = 5, allow_logs: bool = False,
             trusted: Identity | None = None, isolate_jobs: bool = False,
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

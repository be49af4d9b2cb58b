"""A mixed federation: one site agent and one SageMaker site whose job runs as SageMaker runs it.

The SageMaker site's account is moto; its job is run by sagemaker_emulation (``/opt/ml`` laid
out from the request, the image's ``train`` command, model.tar.gz uploaded to S3). The site
program comes from the fraud app's tarball, uploaded content-addressed; the CA arrives in
the ``federation`` channel, the site's own client certificate in its ``identity`` channel, and
the server admits both sites under mutual TLS. The server listens on this machine's name,
not on a loopback address, as a federation with remote sites must.
"""

from __future__ import annotations

import json
import secrets
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest
from rich.console import Console

from fedsilo.deploy.app_archive import FLOWER_JOB_ENTRY, pack_app
from fedsilo.deploy.archive import pack_directory
from fedsilo.deploy.certs import (
    create_self_signed_client_certificate,
    load_authority,
    write_pair,
    write_server_certificate,
)
from fedsilo.deploy.federation_config import load_federation_config
from fedsilo.deploy.orchestrator import run_federation
from fedsilo.deploy.sandbox import SiteAgentProcess, lay_out_federation
from fedsilo.deploy.site import SiteLayout
from fedsilo.examples.fraud.data import generate_providers
from fedsilo.examples.fraud.demo import APP_DIR
from fedsilo.examples.fraud.model import load_model
from fedsilo.examples.fraud.prepare import prepare_federation, write_site_channel, write_test_set
from tests.conftest import free_port
from tests.deploy.test_federate_flower_app import NUMPY_APP, _fedavg_weight

from .aws_strict import StrictRequests
from .sagemaker_emulation import TrainingJobEmulator

pytestmark = pytest.mark.slow

OWNER = "111122223333"
BASE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
EXTERNAL_ID = "fraud-federation-7f3c9a"


@pytest.fixture
def agents() -> Iterator[list[SiteAgentProcess]]:
    started: list[SiteAgentProcess] = []
    yield started
    for agent in started:
        agent.stop()


def _upload(s3: object, bucket: str, prefix: str, directory: Path) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(directory)}",  # type: ignore[attr-defined]
                          Body=path.read_bytes())


def _mixed_federation(work: Path, moto_endpoint: str, app: Path, local: Path,
                      channels: dict[str, Path], source: Path, **layout: object) -> Path:
    """site1 a site agent with the channel ``local``, site2 a SageMaker site whose bucket
    holds ``channels`` (name to directory) and its own identity, and whose jobs run the app
    from ``source``; the federation.toml, with the server on this machine's name."""
    port = free_port()
    toml = lay_out_federation(work, {"site1": local}, app, {"site1": port}, **layout)
    host = socket.gethostname()  # what remote jobs dial: not a loopback address
    write_server_certificate(work / "certs", load_authority(work / "certs"), "server",
                             (host, "127.0.0.1"))
    server_port = free_port()

    # The data owner's side: bucket with the channels and the site's own identity.
    bucket = f"fedsilo-site2-{secrets.token_hex(4)}"
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint, **BASE)
    s3.create_bucket(Bucket=bucket)
    for name, directory in channels.items():
        _upload(s3, bucket, f"data/{name}", directory)
    cert_pem, key = create_self_signed_client_certificate("site2")
    certificate, _ = write_pair(work / "site2-identity", "client", cert_pem, key)
    _upload(s3, bucket, "identity", work / "site2-identity")
    uris = ", ".join(f'{name} = "s3://{bucket}/data/{name}/"' for name in channels)

    text = toml.read_text().replace(
        'address = "127.0.0.1:0"',
        f'address = "{socket.gethostbyname(host)}:{server_port}"\n'
        f'public_address = "{host}:{server_port}"\nfinish_timeout = 120')
    text = text.replace("connect_timeout = 60.0", "connect_timeout = 120")
    program = layout.get("program", "client.py")
    toml.write_text(text + f"""
[[sites]]
name = "site2"
launcher = "sagemaker"
region = "us-east-1"
endpoint_url = "{moto_endpoint}"
role = "arn:aws:iam::{OWNER}:role/FL-kickoff-client-job"
external_id = "{EXTERNAL_ID}"
source_identity = "fraud-operator"
execution_role = "arn:aws:iam::{OWNER}:role/FL-execution-site2"
training_image = "{OWNER}.dkr.ecr.us-east-1.amazonaws.com/fedsilo-site2:0.1.0"
{f'program = "{program}"' if program else ""}
source = "{source}"
code_prefix = "s3://{bucket}/code"
output = "s3://{bucket}/output/"
max_runtime = 900
channels = {{ {uris}, identity = "s3://{bucket}/identity/" }}
client_certificate = "{certificate}"
""")
    return toml


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)


def test_a_local_site_and_a_sagemaker_site_federate_under_mutual_tls(
        tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, aws_env: None,
        agents: list[SiteAgentProcess], strict_aws: StrictRequests) -> None:
    emulator = TrainingJobEmulator(tmp_path / "sagemaker", moto_endpoint, BASE).install(
        monkeypatch)
    data = tmp_path / "data"
    split = prepare_federation(generate_providers(1000, seed=5), n_sites=2, seed=5)
    for site in split.sites:
        write_site_channel(site, data / site.name)
    write_test_set(split, data / "server")
    work = tmp_path / "work"
    work.mkdir()
    source = pack_directory(APP_DIR, work / "source.tar.gz")  # the app, as site2 keeps it
    toml = _mixed_federation(work, moto_endpoint, APP_DIR, data / "site1",
                             {"train": data / "site2"}, source, server_data=data / "server",
                             rounds=2, run_config={"penalty": "l2", "max-iter": 10})
    port = json.loads((work / "sites" / "site1" / "site.json").read_text())["port"]
    config = load_federation_config(toml)
    assert config.connect_timeout == 120 and config.finish_timeout == 120
    agents.append(SiteAgentProcess(SiteLayout(work / "sites" / "site1"), port,
                                   work / "agent-site1.log").start())
    try:
        with (work / "console.log").open("w") as console:
            result = run_federation(config, Console(file=console))
    finally:
        emulator.stop_all()

    job = emulator.jobs[result.jobs["site2"]["TrainingJobName"]]
    log = (job.base.parent / "train.log").read_text()
    assert result.jobs["site2"]["TrainingJobStatus"] == "Completed", log + job.failure
    summary = json.loads((work / "run" / "federation.json").read_text())
    assert summary["transport"] == {"tls": True, "enrolled_sites": 2}
    assert summary["site_models"] == {"site2": result.files["site2.model"]}
    history = json.loads((work / "run" / "history.json").read_text())
    assert [r for r, _ in history["losses_centralized"]] == [0, 1, 2]

    # The job ran the uploaded program with the CA and identity from its channels ...
    assert sorted(p.name for p in (job.base / "input" / "data").iterdir()) == [
        "federation", "identity", "train"]
    assert not any("BEGIN" in v for v in job.request["HyperParameters"].values())
    # ... and its model.tar.gz came back to the federation's output.
    archive = Path(result.files["site2.model"])
    assert archive == work / "run" / "sites" / "site2" / "model.tar.gz"
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["model.joblib"]
        tar.extractall(tmp_path / "unpacked", filter="data")
    np.testing.assert_allclose(load_model(tmp_path / "unpacked" / "model.joblib").coef_,
                               load_model(work / "run" / "model.joblib").coef_, rtol=1e-12)
    assert strict_aws.operations("sagemaker").count("CreateTrainingJob") == 1


def test_a_flower_app_runs_its_clientapp_on_a_sagemaker_site(
        tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, aws_env: None,
        agents: list[SiteAgentProcess], strict_aws: StrictRequests) -> None:
    """quickstart-numpy over a site agent (partition 0) and a SageMaker site (partition 1,
    set by the site in its own config channel): the model is FedAvg's over both partitions."""
    monkeypatch.chdir(tmp_path)  # the ServerApp writes final_model.npz where it runs
    emulator = TrainingJobEmulator(tmp_path / "sagemaker", moto_endpoint, BASE).install(
        monkeypatch)
    empty, own = tmp_path / "no-data", tmp_path / "site2-config"
    empty.mkdir()
    (empty / "README").write_text("the quickstart makes its data from the partition id\n")
    own.mkdir()
    (own / "node-config.json").write_text('{"partition-id": 1, "num-partitions": 2}\n')
    work = tmp_path / "work"
    work.mkdir()
    source = work / "app.tar.gz"  # the app as `fedsilo app pack` packs it, kept by site2
    source.write_bytes(pack_app(NUMPY_APP).data)
    toml = _mixed_federation(
        work, moto_endpoint, NUMPY_APP, empty, {"config": own}, source, server="", program="",
        run_config={"num-server-rounds": 3, "min-available-nodes": 2, "lr": 0.25},
        node_configs={"site1": {"partition-id": 0, "num-partitions": 2}})
    port = json.loads((work / "sites" / "site1" / "site.json").read_text())["port"]
    agents.append(SiteAgentProcess(SiteLayout(work / "sites" / "site1"), port,
                                   work / "agent-site1.log").start())
    try:
        with (work / "console.log").open("w") as console:
            result = run_federation(load_federation_config(toml), Console(file=console))
    finally:
        emulator.stop_all()

    job = emulator.jobs[result.jobs["site2"]["TrainingJobName"]]
    log = (job.base.parent / "train.log").read_text()
    assert result.jobs["site2"]["TrainingJobStatus"] == "Completed", log + job.failure
    assert job.request["HyperParameters"]["sagemaker_program"] == FLOWER_JOB_ENTRY
    want = _fedavg_weight(3, 0.25, 2)  # wrong partitions would give another target
    for got in [*result.arrays, *np.load(tmp_path / "final_model.npz").values()]:
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with tarfile.open(result.files["site2.model"]) as tar:
        assert tar.getnames() == []  # the quickstart's ClientApp keeps nothing at the site

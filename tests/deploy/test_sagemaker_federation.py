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


def test_a_local_site_and_a_sagemaker_site_federate_under_mutual_tls(
        tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
        agents: list[SiteAgentProcess], strict_aws: StrictRequests) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    emulator = TrainingJobEmulator(tmp_path / "sagemaker", moto_endpoint, BASE).install(
        monkeypatch)
    data = tmp_path / "data"
    split = prepare_federation(generate_providers(1000, seed=5), n_sites=2, seed=5)
    for site in split.sites:
        write_site_channel(site, data / site.name)
    write_test_set(split, data / "server")

    work = tmp_path / "work"
    port = free_port()
    toml = lay_out_federation(work, {"site1": data / "site1"}, APP_DIR, {"site1": port},
                              server_data=data / "server", rounds=2,
                              run_config={"penalty": "l2", "max-iter": 10})
    host = socket.gethostname()  # what remote jobs dial: not a loopback address
    write_server_certificate(work / "certs", load_authority(work / "certs"), "server",
                             (host, "127.0.0.1"))
    server_port = free_port()

    # The data owner's side: bucket with the channel and the site's own identity.
    bucket = f"fedsilo-site2-{secrets.token_hex(4)}"
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint, **BASE)
    s3.create_bucket(Bucket=bucket)
    _upload(s3, bucket, "data/train", data / "site2")
    cert_pem, key = create_self_signed_client_certificate("site2")
    certificate, _ = write_pair(work / "site2-identity", "client", cert_pem, key)
    _upload(s3, bucket, "identity", work / "site2-identity")
    source = pack_directory(APP_DIR, work / "source.tar.gz")  # the app, as site2 keeps it

    text = toml.read_text().replace(
        'address = "127.0.0.1:0"',
        f'address = "{socket.gethostbyname(host)}:{server_port}"\n'
        f'public_address = "{host}:{server_port}"\nfinish_timeout = 120')
    text = text.replace("connect_timeout = 60.0", "connect_timeout = 120")
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
program = "client.py"
source = "{source}"
code_prefix = "s3://{bucket}/code"
output = "s3://{bucket}/output/"
max_runtime = 900
channels = {{ train = "s3://{bucket}/data/train/", identity = "s3://{bucket}/identity/" }}
client_certificate = "{certificate}"
""")
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

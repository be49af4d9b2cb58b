"""``fedsilo federate`` end to end: three site agents, real jobs, gRPC over TLS.

The same federation is also run directly (clients in threads of this process, no sites, no
TLS) on the same channels; the server's figures of both runs must agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.deploy.sandbox import (
    SiteAgentProcess,
    lay_out_federation,
    run_local_federation,
)
from fedsilo.deploy.site import SiteLayout, namespaces_available
from fedsilo.examples.fraud.client import FraudClient
from fedsilo.examples.fraud.data import generate_providers
from fedsilo.examples.fraud.demo import APP_DIR
from fedsilo.examples.fraud.model import load_model, new_model
from fedsilo.examples.fraud.prepare import (
    load_site_channel,
    load_test_set,
    prepare_federation,
    write_site_channel,
    write_test_set,
)
from fedsilo.examples.fraud.server_side import build_strategy
from tests.conftest import LocalFederation, free_port

pytestmark = pytest.mark.slow

ROUNDS = 3
SITES = ("site1", "site2", "site3")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Channels for three sites and the server's test set, from one seed."""
    root = tmp_path_factory.mktemp("data")
    split = prepare_federation(generate_providers(1500, seed=3), n_sites=3, seed=3)
    for site in split.sites:
        write_site_channel(site, root / site.name)
    write_test_set(split, root / "server")
    return root


def _federation(work: Path, data: Path, **kwargs: object) -> tuple[Path, list[SiteAgentProcess]]:
    ports = {name: free_port() for name in SITES}
    toml = lay_out_federation(work, {name: data / name for name in SITES}, APP_DIR, ports,
                              server_data=data / "server", rounds=ROUNDS,
                              run_config={"penalty": "l2", "max-iter": 10},
                              **kwargs)  # type: ignore[arg-type]
    agents = [SiteAgentProcess(SiteLayout(work / "sites" / name), ports[name],
                               work / f"agent-{name}.log") for name in SITES]
    return toml, agents


@pytest.fixture
def agents_to_stop() -> Iterator[list[SiteAgentProcess]]:
    agents: list[SiteAgentProcess] = []
    yield agents
    for agent in agents:
        agent.stop()


def _federate(toml: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedsilo.cli.main", "federate", str(toml)],
                          capture_output=True, text=True, timeout=150)


def _direct_run(data: Path) -> fl.server.History:
    """The same federation with no sites: clients in threads, plain gRPC on loopback."""
    X_test, y_test = load_test_set(data / "server")
    strategy = build_strategy(new_model("l2", 10), X_test, y_test, len(SITES))
    federation = LocalFederation()
    for name in SITES:
        federation.start_client(FraudClient(load_site_channel(data / name), new_model("l2", 10)))
    history = federation.run_server(strategy, ROUNDS)
    federation.join_clients()
    return history


def _records(work: Path, site: str) -> list[dict[str, object]]:
    return [json.loads(p.read_text())
            for p in sorted((work / "sites" / site / "jobs").glob("*/record.json"))]


def test_federate_through_three_site_agents(tmp_path: Path, data: Path,
                                            agents_to_stop: list[SiteAgentProcess]) -> None:
    toml, agents = _federation(tmp_path, data)
    for agent in agents:
        agents_to_stop.append(agent.start())
    result = _federate(toml)
    assert result.returncode == 0, result.stdout + result.stderr

    run = tmp_path / "run"
    model = load_model(run / "model.joblib")  # the app's own output, beside the final arrays
    final = np.load(run / "final_arrays.npz")
    np.testing.assert_array_equal(final["arr_0"], model.coef_)
    np.testing.assert_array_equal(final["arr_1"], model.intercept_)
    history = json.loads((run / "history.json").read_text())
    assert [r for r, _ in history["losses_centralized"]] == list(range(ROUNDS + 1))
    summary = json.loads((run / "federation.json").read_text())
    assert summary["transport"] == {"tls": True, "enrolled_sites": 3}  # mutual TLS, allowlist
    for name in SITES:
        job = summary["jobs"][name]
        assert job["TrainingJobStatus"] == "Completed"
        location = job["ModelArtifacts"]["S3ModelArtifacts"]
        archive = tmp_path / "sites" / name / location.removeprefix(f"site://{name}/")
        assert archive.is_file() and archive.parent.parent.parent.name == "fl"
        with tarfile.open(archive) as tar:
            assert tar.getnames() == ["model.joblib"]
            tar.extractall(tmp_path / "unpacked" / name, filter="data")
        site_model = load_model(tmp_path / "unpacked" / name / "model.joblib")
        # Every site ends with the final global model, the one the server saved.
        np.testing.assert_allclose(site_model.coef_, model.coef_, rtol=1e-12)
        # The server never wrote into a site, and no site holds another's data.
        assert sorted(p.name for p in (tmp_path / "sites" / name / "channels").iterdir()) == \
            ["identity", "train"]
    assert not (tmp_path / "sites" / "site1" / "channels" / "test.csv").exists()
    site_config = json.loads((tmp_path / "sites" / "site1" / "site.json").read_text())
    # Where the machine allows it, the jobs ran unable to see any other site.
    assert site_config["isolate_jobs"] == namespaces_available()
    assert "round 3/3" in result.stdout

    direct = _direct_run(data)
    np.testing.assert_allclose([loss for _, loss in history["losses_centralized"]],
                               [loss for _, loss in direct.losses_centralized], rtol=1e-6)
    for metric, series in direct.metrics_centralized.items():
        np.testing.assert_allclose([v for _, v in history["metrics_centralized"][metric]],
                                   [float(v) for _, v in series], rtol=1e-6, err_msg=metric)


def test_a_failing_site_ends_the_run_with_its_reason(tmp_path: Path, data: Path,
                                                     agents_to_stop: list[SiteAgentProcess]
                                                     ) -> None:
    toml, agents = _federation(tmp_path, data, connect_timeout=30.0)
    (tmp_path / "sites" / "site2" / "channels" / "train" / "validation.csv").unlink()
    for agent in agents:
        agents_to_stop.append(agent.start())
    result = _federate(toml)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "site site2 failed" in result.stdout
    assert "validation.csv" in result.stdout  # the site's own reason, from its program
    assert not (tmp_path / "run" / "final_arrays.npz").exists()
    for name in ("site1", "site3"):  # the others were waiting for the server: stopped
        (record,) = _records(tmp_path, name)
        assert record["status"] == "Stopped", record
    (failed,) = _records(tmp_path, "site2")
    assert failed["status"] == "Failed"


def test_run_local_federation_starts_and_stops_its_agents(tmp_path: Path, data: Path) -> None:
    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    result = run_local_federation(tmp_path, {name: data / name for name in SITES[:2]},
                                  APP_DIR, server_data=data / "server", rounds=1)
    assert [r for r, _ in result.history.losses_centralized] == [0, 1]
    assert set(result.jobs) == {"site1", "site2"}
    for name in ("site1", "site2"):
        assert result.jobs[name]["TrainingJobStatus"] == "Completed"
        assert list((tmp_path / "sites" / name / "artifacts").rglob("model.tar.gz"))
    assert (tmp_path / "run" / "final_arrays.npz").is_file()
    leftover = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not [p for p in leftover if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

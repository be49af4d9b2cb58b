"""Every name of Flower's legacy ``__all__`` lists is in fedsilo, or docs/flower-api.md says
why it is left out."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.interop.conftest import build_or_fail
from tests.interop.flower_envs import FLWR_NEWEST_PLAIN, FlowerEnv

DOC = Path(__file__).resolve().parents[1] / "docs" / "flower-api.md"

# The __all__ lists of flwr 1.42.0 (flwr/common, client, server, server/strategy, simulation).
FLOWER_ALL = {
    "flwr.common": [
        "Array", "ArrayRecord", "ClientMessage", "Code", "Config", "ConfigRecord",
        "ConfigRecordValues", "ConfigsRecord", "Context", "DEFAULT_TTL", "DisconnectRes",
        "Error", "EvaluateIns", "EvaluateRes", "EventType", "FitIns", "FitRes",
        "GRPC_MAX_MESSAGE_LENGTH", "GetParametersIns", "GetParametersRes", "GetPropertiesIns",
        "GetPropertiesRes", "Message", "MessageType", "MessageTypeLegacy", "Metadata",
        "MetricRecord", "MetricRecordValues", "Metrics", "MetricsAggregationFn",
        "MetricsRecord", "NDArray", "NDArrayFloat", "NDArrayInt", "NDArrays", "Parameters",
        "ParametersRecord", "Properties", "ReconnectIns", "RecordDict", "RecordSet", "Scalar",
        "ServerMessage", "Status", "Value", "array_from_numpy", "bytes_to_ndarray",
        "configure", "event", "log", "ndarray_to_bytes", "ndarrays_to_parameters", "now",
        "parameters_to_ndarrays",
    ],
    "flwr.client": [
        "Client", "ClientApp", "ClientFn", "ClientFnExt", "NumPyClient", "mod",
        "start_client", "start_numpy_client",
    ],
    "flwr.server": [
        "ClientManager", "Driver", "Grid", "History", "LegacyContext", "Server", "ServerApp",
        "ServerAppComponents", "ServerConfig", "SimpleClientManager", "start_server",
        "strategy", "workflow",
    ],
    "flwr.server.strategy": [
        "Bulyan", "DPFedAvgAdaptive", "DPFedAvgFixed",
        "DifferentialPrivacyClientSideAdaptiveClipping",
        "DifferentialPrivacyClientSideFixedClipping",
        "DifferentialPrivacyServerSideAdaptiveClipping",
        "DifferentialPrivacyServerSideFixedClipping", "FaultTolerantFedAvg", "FedAdagrad",
        "FedAdam", "FedAvg", "FedAvgAndroid", "FedAvgM", "FedMedian", "FedOpt", "FedProx",
        "FedTrimmedAvg", "FedXgbBagging", "FedXgbCyclic", "FedXgbNnAvg", "FedYogi", "Krum",
        "QFedAvg", "Strategy",
    ],
    "flwr.simulation": [
        "SimulationIoConnection", "run_simulation", "run_simulation_process",
        "start_simulation",
    ],
}

# Names fedsilo must have (the legacy API), whatever the table says.
REQUIRED = {
    "flwr.common": ["ClientMessage", "ServerMessage", "EventType", "event", "Value",
                    "NDArrayInt", "NDArrayFloat", "log", "configure"],
    "flwr.server.strategy": FLOWER_ALL["flwr.server.strategy"],
    "flwr.client": ["Client", "NumPyClient", "start_client", "start_numpy_client"],
    "flwr.server": ["ClientManager", "History", "Server", "ServerConfig",
                    "SimpleClientManager", "start_server", "strategy"],
    "flwr.simulation": ["start_simulation"],
}


def left_out() -> dict[str, set[str]]:
    """The table of docs/flower-api.md: module -> the names it says fedsilo leaves out."""
    table: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `(flwr[.\w]*)` \| (.+?) \| .+ \|$", line)
        if match:
            table[match.group(1)] = set(re.findall(r"`([\w.]+)`", match.group(2)))
    return table


def has(module: str, name: str) -> bool:
    fedsilo_module = importlib.import_module(module.replace("flwr", "fedsilo", 1))
    return hasattr(fedsilo_module, name) and name in getattr(fedsilo_module, "__all__", [name])


@pytest.mark.parametrize("module", sorted(FLOWER_ALL))
def test_every_flower_name_is_here_or_documented_as_left_out(module: str) -> None:
    documented = left_out().get(module, set())
    unexplained = [n for n in FLOWER_ALL[module] if not has(module, n) and n not in documented]
    assert not unexplained, f"{module}: add these or explain them in {DOC.name}: {unexplained}"


@pytest.mark.parametrize("module", sorted(REQUIRED))
def test_the_legacy_names_are_exported(module: str) -> None:
    missing = [n for n in REQUIRED[module] if not has(module, n)]
    assert not missing, f"{module} lacks {missing}"
    assert not set(REQUIRED[module]) & left_out().get(module, set())


def test_the_table_lists_only_flowers_names() -> None:
    for module, names in left_out().items():
        assert names <= set(FLOWER_ALL[module]), names - set(FLOWER_ALL[module])


@pytest.fixture(scope="module")
def flwr_newest_plain_env() -> FlowerEnv:
    return build_or_fail(FLWR_NEWEST_PLAIN)


@pytest.mark.flwr
@pytest.mark.timeout(900, func_only=True)
def test_the_pinned_lists_are_the_newest_flowers(flwr_newest_plain_env: FlowerEnv) -> None:
    script = ("import importlib, json\n"
              f"mods = {sorted(FLOWER_ALL)!r}\n"
              "print(json.dumps({m: sorted(importlib.import_module(m).__all__) for m in mods}))")
    done = subprocess.run([flwr_newest_plain_env.python, "-c", script], capture_output=True,
                          text=True, timeout=300, env=flwr_newest_plain_env.environ())
    assert done.returncode == 0, done.stderr
    newest = json.loads(done.stdout.splitlines()[-1])
    for module, names in newest.items():
        # A name Flower added since is either here already or must be decided on.
        added = [n for n in set(names) - set(FLOWER_ALL[module])
                 if not has(module, n) and n not in left_out().get(module, set())]
        assert not added, f"Flower {module} now also exports {added}"

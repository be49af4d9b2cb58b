"""A checkpoint that cannot be resumed stops ``fedsilo server --resume`` before it listens.

Each case damages the newest checkpoint of a real run directory in one way, then runs the
real command line: it must exit non-zero with one line that names the checkpoint's
directory, and never listen (its port stays closed, its log never says so).
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import ndarrays_to_parameters
from fedsilo.common.exceptions import CheckpointError
from fedsilo.server import History
from fedsilo.server.checkpoint import RoundCheckpoint, save_checkpoint
from tests.conftest import free_port
from tests.interop.harness import accepts_connections
from tests.reliability.momentum_strategy import initial_arrays
from tests.reliability.peers import Honest, ServerThread, start_client_thread
from tests.reliability.processes import REPO_ROOT, environ, server_argv

pytestmark = pytest.mark.timeout(120)

STRATEGY = "tests.reliability.momentum_strategy:make_strategy"


def write_run(directory: Path, arrays: list[np.ndarray], strategy_type: str) -> Path:
    """A checkpoint of round 2, as a run with ``strategy_type`` would have written it."""
    history = History()
    history.add_loss_distributed(1, 0.5)
    history.add_loss_distributed(2, 0.25)
    state = {"velocity": [np.zeros_like(a) for a in arrays], "rounds_aggregated": 2}
    return save_checkpoint(directory, RoundCheckpoint(
        2, ndarrays_to_parameters(arrays), history, strategy_type,
        state if strategy_type == "MomentumFedAvg" else {}))


def truncate(path: Path) -> None:
    data = (path / "parameters.npz").read_bytes()
    (path / "parameters.npz").write_bytes(data[:len(data) // 2])


def flip_a_byte(path: Path) -> None:
    target = path / "parameters.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the first tensor's bytes
    target.write_bytes(bytes(data))


def remove_parameters(path: Path) -> None:
    (path / "parameters.npz").unlink()


def other_shape(path: Path) -> None:
    """A checkpoint of another model: the first tensor has a row more than the strategy's."""
    arrays = initial_arrays()
    arrays[0] = np.zeros((5, 3))
    write_run(path.parent, arrays, "MomentumFedAvg")


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated parameters.npz": (truncate, "cannot be read"),
    "a byte of parameters.npz flipped": (flip_a_byte, "cannot be read"),
    "parameters.npz missing": (remove_parameters, "cannot be read"),
    "another model's shapes": (other_shape, re.escape("[(5, 3) float64, (3,) float64], while "
                                                      "the strategy's initial parameters are "
                                                      "[(4, 3) float64, (3,) float64]")),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_checkpoint_ends_the_cli_with_one_line_before_it_listens(
    case: str, tmp_path: Path
) -> None:
    directory = tmp_path / "run"
    damage, expected = DAMAGE[case]
    damage(write_run(directory, initial_arrays(), "MomentumFedAvg"))
    port = free_port()
    server = subprocess.Popen(
        server_argv("--address", f"127.0.0.1:{port}", "--rounds", "4", "--strategy", STRATEGY,
                    "--checkpoint-dir", str(directory), "--resume"),
        env=environ(), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listened = False
    while True:  # until it exits; the test's timeout bounds the wait
        listened = listened or accepts_connections(port)
        try:
            out, err = server.communicate(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            continue
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert server.returncode != 0
    assert not listened
    assert len(lines) == 1, lines
    assert str(directory) in lines[0]
    assert lines[0].startswith("fedsilo server: ")
    assert re.search(expected, lines[0]), lines[0]
    if expected == "cannot be read":
        assert "remove that directory" in lines[0]
    else:
        assert "empty checkpoint directory" in lines[0]


def test_without_initial_parameters_the_first_client_s_shapes_are_checked(
    tmp_path: Path,
) -> None:
    """FedAvg without initial parameters: the resumed run asks the first client for its
    parameters, and a model of another shape ends the run with both shapes named."""
    arrays = [np.zeros((4, 2)), np.zeros(3)]  # the clients' model is (4, 3), (3,)
    write_run(tmp_path, arrays, "FedAvg")
    address = f"127.0.0.1:{free_port()}"
    server = ServerThread(server_address=address, checkpoint_dir=tmp_path,
                          strategy=fl.server.strategy.FedAvg(min_available_clients=1),
                          config=fl.server.ServerConfig(num_rounds=4, round_timeout=10))
    client = Honest(1.0, 10)
    errors: list[BaseException] = []
    thread: threading.Thread = start_client_thread(address, client, errors, max_wait_time=20)
    with pytest.raises(CheckpointError) as caught:
        server.join(60)
    thread.join(20)
    message = str(caught.value)
    assert "[(4, 2) float64, (3,) float64]" in message
    assert "[(4, 3) float64, (3,) float64]" in message
    assert "first client" in message and str(tmp_path) in message
    assert client.fits == 0  # no round ran on the mismatched model

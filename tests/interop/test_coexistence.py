"""flwr and fedsilo in one process: both protobuf modules load, and their messages agree.

Both define ``flwr.proto.ServerMessage`` (fedsilo must, to speak Flower's protocol). fedsilo
keeps its descriptors in a pool of its own, so importing both, in either order, must not clash
in protobuf's default pool; and every message one side serializes must parse on the other side
to the same values and the same bytes. Runs ``wire_probe.py`` in the newest-flwr venv, where
fedsilo is installed too.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.interop.flower_envs import REPO_ROOT, FlowerEnv
from tests.interop.harness import WIRE_PROBE


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(90, func_only=True)
@pytest.mark.parametrize("order", ["flwr-first", "fedsilo-first"])
def test_flwr_and_fedsilo_share_a_process_and_read_each_others_messages(
    flwr_newest_env: FlowerEnv, order: str, tmp_path: Path
) -> None:
    done = subprocess.run([flwr_newest_env.python, str(WIRE_PROBE), "--order", order],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=flwr_newest_env.environ())
    assert done.returncode == 0, f"the probe failed:\n{done.stdout}\n{done.stderr}"
    report = json.loads(done.stdout)

    assert report["flwr_version"] == flwr_newest_env.flwr_version
    # This checkout's fedsilo, not another copy.
    assert Path(report["fedsilo_file"]).resolve() == REPO_ROOT / "src" / "fedsilo" / "__init__.py"
    # Same protobuf names (the wire needs them), different pools; flwr owns the default one.
    assert report["flwr_server_message"] == {
        "full_name": "flwr.proto.ServerMessage", "file": "flwr/proto/transport.proto",
        "in_default_pool": True}
    assert report["fedsilo_server_message"] == {
        "full_name": "flwr.proto.ServerMessage", "file": "fedsilo/proto/transport.proto",
        "in_default_pool": False}
    assert report["default_pool_server_message_file"] == "flwr/proto/transport.proto"

    names = {check["name"] for check in report["checks"]}
    for message in ("fit_ins", "evaluate_ins", "get_parameters_ins", "get_properties_ins",
                    "reconnect_ins", "fit_res", "evaluate_res", "get_parameters_res",
                    "get_properties_res", "disconnect_res"):
        for direction in ("fedsilo -> flwr", "flwr -> fedsilo"):
            assert any(n.endswith(f".{message}: {direction}") for n in names), (message,
                                                                                 direction)
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    assert not failed, "\n".join(failed)

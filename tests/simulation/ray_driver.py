"""A separate driver that joins a running Ray cluster through start_simulation.

``python ray_driver.py ADDRESS`` prints, as JSON, the Ray node ids the clients ran on and
the History's distributed losses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import fedsilo as fl  # noqa: E402
import fedsilo.simulation as sim  # noqa: E402
from tests.simulation.clients import ResourceReportingClient  # noqa: E402
from tests.simulation.recording import RecordingStrategy  # noqa: E402


def client_fn(cid: str) -> fl.client.Client:
    return ResourceReportingClient(cid).to_client()


def main(address: str) -> None:
    strategy = RecordingStrategy(min_fit_clients=4, min_available_clients=4,
                                 min_evaluate_clients=4)
    history = sim.start_simulation(
        client_fn=client_fn, num_clients=4, config=fl.server.ServerConfig(num_rounds=1),
        strategy=strategy, backend="ray", ray_init_args={"address": address})
    report: dict[str, Any] = {
        "nodes": sorted({m["node"] for m in strategy.fit_metrics[1].values()}),
        "losses": history.losses_distributed,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])

"""A deterministic client process with scripted faults, for reliability tests.

``fit`` returns ``0.5 * parameters + offset`` on ``examples`` examples. In round
``--block-round`` it first writes ``<marker-dir>/<name>.round<r>`` and then waits
until ``--release-file`` exists (or is killed while it waits); with ``--poison``
the reply to that round is 1e6 everywhere, so a test can tell whether it was
aggregated. Run: ``python -m tests.reliability.scripted_client --address ... --name a``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if "--flower" in sys.argv:  # the same client on Flower, run from a Flower venv
    import flwr as fl  # type: ignore[import-not-found, unused-ignore]
else:
    import fedsilo as fl

POISON = 1e6


class ScriptedClient(fl.client.NumPyClient):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(3)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        server_round = int(config.get("server_round", -1))
        if server_round == self.args.block_round:
            self._wait_for_release(server_round)
            if self.args.poison:
                return [np.full_like(p, POISON) for p in parameters], self.args.examples, {}
        updated = [0.5 * p + self.args.offset for p in parameters]
        return updated, self.args.examples, {"name_length": len(self.args.name)}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        loss = float(sum(np.square(p - self.args.offset).sum() for p in parameters))
        return loss, self.args.examples, {}

    def _wait_for_release(self, server_round: int) -> None:
        marker = Path(self.args.marker_dir) / f"{self.args.name}.round{server_round}"
        marker.write_text("waiting")
        release = Path(self.args.release_file)
        deadline = time.monotonic() + 120.0
        while not release.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{release} never appeared")
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--offset", type=float, default=1.0)
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--block-round", type=int, default=-2)
    parser.add_argument("--marker-dir", default=".")
    parser.add_argument("--release-file", default="release")
    parser.add_argument("--poison", action="store_true")
    parser.add_argument("--max-wait-time", type=float, default=60.0)
    parser.add_argument("--flower", action="store_true", help="run on flwr, not fedsilo")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"{args.name} %(levelname)s %(message)s")
    fl.client.start_client(server_address=args.address, client=ScriptedClient(args).to_client(),
                           insecure=True, max_wait_time=args.max_wait_time)


if __name__ == "__main__":
    main()

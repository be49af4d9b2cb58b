"""A deterministic fedsilo client, started with ``fedsilo.client.start_numpy_client``.

``fit`` adds ``--offset`` to every parameter and reports ``--num-examples``; ``evaluate``
reports the loss ``mean(parameters) + offset**2``. Every instruction it gets (kind, config,
parameters, and the loss it returned) is written to ``--record`` (JSON) when it stops.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

import fedsilo as fl

FitReturn = tuple[list[np.ndarray], int, dict[str, Any]]
EvaluateReturn = tuple[float, int, dict[str, Any]]


class OffsetClient(fl.client.NumPyClient):
    def __init__(self, offset: float, num_examples: int) -> None:
        self.offset = offset
        self.num_examples = num_examples
        self.seen: list[dict[str, Any]] = []

    def _see(self, kind: str, parameters: list[np.ndarray], config: dict[str, Any],
             **returned: Any) -> None:
        self.seen.append({"kind": kind, "config": config,
                          "parameters": [p.tolist() for p in parameters], **returned})

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.full((3, 2), self.offset), np.full((2,), self.offset)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> FitReturn:
        self._see("fit", parameters, config, num_examples=self.num_examples)
        return [p + self.offset for p in parameters], self.num_examples, {"offset": self.offset}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> EvaluateReturn:
        loss = float(np.concatenate([p.ravel() for p in parameters]).mean()) + self.offset**2
        self._see("evaluate", parameters, config, loss=loss, num_examples=self.num_examples)
        return loss, self.num_examples, {"offset": self.offset}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server-address", required=True)
    parser.add_argument("--offset", type=float, required=True)
    parser.add_argument("--num-examples", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()

    client = OffsetClient(args.offset, args.num_examples)
    try:
        fl.client.start_numpy_client(server_address=args.server_address, client=client,
                                     max_wait_time=60)
    finally:
        args.record.write_text(json.dumps(client.seen))


if __name__ == "__main__":
    main()

"""Writes checkpoints of rounds 1, 2, ... as fast as it can, until it is killed.

Round r holds 8 MB of parameters equal to r and a History with one loss per round, so a
reader can tell whether what it loads is one consistent round.
Run: ``python checkpoint_writer.py DIRECTORY``.
"""

from __future__ import annotations

import sys

import numpy as np

from fedsilo.common import ndarrays_to_parameters
from fedsilo.server import History
from fedsilo.server.checkpoint import RoundCheckpoint, save_checkpoint

SIZE = 1_000_000


def main() -> None:
    directory = sys.argv[1]
    history = History()
    for server_round in range(1, 10_000):
        history.add_loss_distributed(server_round, float(server_round))
        parameters = ndarrays_to_parameters([np.full(SIZE, float(server_round))])
        save_checkpoint(directory, RoundCheckpoint(
            server_round, parameters, history, "FedAvg",
            {"moment": np.full(SIZE // 10, float(server_round))}))


if __name__ == "__main__":
    main()

"""Message-API FedAvg against legacy FedAvg: round time and server memory over gRPC.

The same fedsilo client processes (each returns the parameters it got, offset by its own
weight) join either fedsilo's ``start_server`` with the legacy FedAvg or a ServerApp whose
``main`` runs the Message-API FedAvg (``fedsilo.serverapp.strategy.FedAvg.start``), on
127.0.0.1, fit-only rounds of a float32 model. Runs alternate (legacy, Message API, legacy,
...) with ``--repeat``; medians exclude each run's first round (connecting). The final
models of the two must agree.

    python bench/app_rounds.py --settings 10x1M,50x100k --rounds 6 --repeat 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rounds import Outcome, Peer, parse_setting, run_federation  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="10x1M,50x100k")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    legacy = Peer("legacy FedAvg", "fedsilo", sys.executable)
    message = Peer("Message-API FedAvg", "fedsilo-app", sys.executable)
    agree = True
    with tempfile.TemporaryDirectory(prefix="fedsilo-app-rounds-") as tmp:
        for setting in args.settings.split(","):
            n_clients, n_params = parse_setting(setting)
            outcomes: dict[str, Outcome] = {}
            for _ in range(args.repeat):
                for server in (legacy, message):
                    result = run_federation(server, legacy, n_clients, n_params, args.rounds,
                                            True, Path(tmp))
                    outcomes[server.label] = (result if server.label not in outcomes
                                              else outcomes[server.label].merged(result))
            ours, base = outcomes[message.label], outcomes[legacy.label]
            same = bool(np.allclose(ours.final, base.final, rtol=1e-6, atol=1e-6))
            agree &= same
            for label, result in outcomes.items():
                print(f"{setting:>8} {label:<20} median {result.median:7.3f} s/round  "
                      f"peak RSS {result.peak_rss_mb:7,.0f} MB", flush=True)
            print(f"{setting:>8} Message API / legacy: time x{ours.median / base.median:.2f}, "
                  f"peak RSS x{ours.peak_rss_mb / base.peak_rss_mb:.2f}; final models "
                  f"{'agree' if same else 'DIFFER'}", flush=True)
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A federation server in its own process, so that a test can measure its memory alone.

Run: ``python flood_server.py PORT RESULT_JSON [--first N] [--tls DIR]``. It runs two rounds
of FedAvg (round 1 waits for ``--first`` clients, later rounds for two) and writes each
round's failures and the final parameters to RESULT_JSON. With ``--tls`` it serves mutual
TLS from ``DIR`` (ca.pem, server.pem, server.key) and admits the clients whose certificates
are ``DIR/enrolled-*.pem``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import fedsilo as fl
from fedsilo.server.grpc.auth import ClientAllowlist
from tests.reliability.peers import FirstRoundWaitsForAll


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("result", type=Path)
    parser.add_argument("--first", type=int, default=2)
    parser.add_argument("--tls", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    tls: dict[str, Any] = {}
    if args.tls is not None:
        tls["certificates"] = tuple((args.tls / name).read_bytes()
                                    for name in ("ca.pem", "server.pem", "server.key"))
        tls["client_allowlist"] = ClientAllowlist.from_pem(
            [path.read_bytes() for path in sorted(args.tls.glob("enrolled-*.pem"))])
    strategy = FirstRoundWaitsForAll(args.first, 2)
    fl.server.start_server(server_address=f"127.0.0.1:{args.port}", strategy=strategy,
                           config=fl.server.ServerConfig(num_rounds=2, round_timeout=20), **tls)
    args.result.write_text(json.dumps({
        "failures": {str(r): [str(f) for f in fs] for r, fs in strategy.failures.items()},
        "results": {str(r): n for r, n in strategy.results.items()},
        "aggregated": [a.tolist() for a in strategy.aggregated[2]],
    }))


if __name__ == "__main__":
    main()

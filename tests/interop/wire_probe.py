"""Imports flwr and fedsilo into one process and checks their messages against each other.

Run with a venv that holds both; ``--order`` picks which package is imported first. Prints a
JSON report on stdout: versions, where each side's ``flwr.proto.ServerMessage`` descriptor
lives, and the outcome of every check in ``wire_checks.py`` as ``{"name", "ok", "detail"}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order", choices=["flwr-first", "fedsilo-first"], required=True)
    order = parser.parse_args().order
    first, second = ("flwr", "fedsilo") if order == "flwr-first" else ("fedsilo", "flwr")
    for package in (first, second):
        importlib.import_module(package)
        importlib.import_module(f"{package}.proto.transport_pb2")
        importlib.import_module(f"{package}.common.serde")

    import google.protobuf
    import wire_checks
    from google.protobuf import descriptor_pool

    flwr_pb: Any = importlib.import_module("flwr.proto.transport_pb2")
    fedsilo_pb: Any = importlib.import_module("fedsilo.proto.transport_pb2")

    checks = []
    for name, check in wire_checks.all_checks().items():
        try:
            problem = check()
        except Exception as exc:  # a crash fails the check, with its reason
            problem = f"{type(exc).__name__}: {exc}"
        checks.append({"name": name, "ok": problem is None, "detail": problem or ""})

    def where(module: Any) -> dict[str, Any]:
        descriptor = module.ServerMessage.DESCRIPTOR
        return {"full_name": descriptor.full_name, "file": descriptor.file.name,
                "in_default_pool": descriptor.file.pool is descriptor_pool.Default()}

    default = descriptor_pool.Default().FindMessageTypeByName("flwr.proto.ServerMessage")
    print(json.dumps({
        "order": order,
        "flwr_version": wire_checks.flwr.__version__,
        "fedsilo_version": wire_checks.fedsilo.__version__,
        "fedsilo_file": wire_checks.fedsilo.__file__,
        "protobuf_version": google.protobuf.__version__,
        "flwr_server_message": where(flwr_pb),
        "fedsilo_server_message": where(fedsilo_pb),
        "default_pool_server_message_file": default.file.name,
        "checks": checks,
    }))


if __name__ == "__main__":
    main()

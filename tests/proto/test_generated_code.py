"""The committed generated code must equal what the .proto generates today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "src" / "fedsilo" / "proto"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    generated = sorted(p.name for p in tmp_path.glob("*_pb2*"))
    assert generated == ["transport_pb2.py", "transport_pb2.pyi", "transport_pb2_grpc.py"]
    for name in generated:
        committed = (PROTO_DIR / name).read_text()
        assert (tmp_path / name).read_text() == committed, (
            f"{name} is stale: run `python scripts/gen_proto.py` and commit the result"
        )


def test_descriptors_live_outside_the_default_pool() -> None:
    from google.protobuf import descriptor_pool

    from fedsilo.proto import transport_pb2

    assert transport_pb2.DESCRIPTOR.pool is not descriptor_pool.Default()

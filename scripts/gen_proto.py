"""Regenerate fedsilo's protobuf and gRPC modules from transport.proto.

The generated descriptors are registered in a private descriptor pool rather
than protobuf's default one: fedsilo's messages carry Flower's package name
(``flwr.proto``) for wire compatibility, and a shared pool would make
``import flwr`` and ``import fedsilo`` clash in one process.

Usage: python scripts/gen_proto.py [OUTPUT_DIR]   (default: src/fedsilo/proto)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PROTO = "fedsilo/proto/transport.proto"
DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def generate(out_dir: Path) -> list[Path]:
    """Run protoc into ``out_dir`` and return the generated files."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{SRC}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(SRC / PROTO),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO}")
        generated = Path(tmp) / "fedsilo" / "proto"
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for path in sorted(generated.iterdir()):
            text = path.read_text()
            if path.name == "transport_pb2.py":
                if DEFAULT_POOL not in text:
                    raise RuntimeError("generated code no longer uses the default pool call")
                text = text.replace(DEFAULT_POOL, PRIVATE_POOL)
            target = out_dir / path.name
            target.write_text(text)
            written.append(target)
        return written


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else SRC / "fedsilo" / "proto"
    for path in generate(out_dir):
        print(path)
    shutil.rmtree(out_dir / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()

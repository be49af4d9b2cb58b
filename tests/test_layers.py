"""The import rules of the architecture: lower layers never import upper ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fedsilo"

FORBIDDEN = {
    "common": ("fedsilo.client", "fedsilo.server", "fedsilo.simulation", "fedsilo.deploy",
               "fedsilo.cli", "fedsilo.examples"),
    "server": ("fedsilo.client", "fedsilo.deploy", "fedsilo.cli", "fedsilo.examples"),
    "client": ("fedsilo.server", "fedsilo.deploy", "fedsilo.cli", "fedsilo.examples"),
    # The app API: records and messages know only common/; a ClientApp runs on the client
    # side, a ServerApp on the server side, and neither knows the other.
    "app": ("fedsilo.client", "fedsilo.server", "fedsilo.simulation", "fedsilo.clientapp",
            "fedsilo.serverapp", "fedsilo.deploy", "fedsilo.cli", "fedsilo.examples"),
    "clientapp": ("fedsilo.server", "fedsilo.serverapp", "fedsilo.simulation", "fedsilo.deploy",
                  "fedsilo.cli", "fedsilo.examples"),
    "serverapp": ("fedsilo.client", "fedsilo.clientapp", "fedsilo.simulation", "fedsilo.deploy",
                  "fedsilo.cli", "fedsilo.examples"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for name in imported_modules(path)
        if any(name == top or name.startswith(top + ".") for top in FORBIDDEN[layer])
    ]
    assert not offenders, offenders


def test_only_serde_reaches_the_generated_protobuf_code() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "proto" not in path.parts and path.name != "serde.py"
        and any(n.startswith("fedsilo.proto") for n in imported_modules(path))
    ]
    assert not offenders, offenders

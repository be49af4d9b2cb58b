"""The import rules of the architecture: lower layers never import upper ones.

Every package of ``src/fedsilo`` has its rule here; the layers, bottom up::

    common  <-  app (records, messages)  <-  client, server  <-  clientapp, serverapp
            <-  simulation  <-  deploy  <-  cli

``examples`` are apps like any user's: nothing imports them but the commands that run them
(``fedsilo demo``, ``simulate`` and ``fraud-data``), and they never reach into the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fedsilo"

APP_API = ("fedsilo.app", "fedsilo.clientapp", "fedsilo.serverapp")
ABOVE_RUNTIME = ("fedsilo.deploy", "fedsilo.cli", "fedsilo.examples")

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "common": ("fedsilo.client", "fedsilo.server", "fedsilo.simulation", *APP_API,
               *ABOVE_RUNTIME),
    "server": ("fedsilo.client", "fedsilo.simulation", "fedsilo.clientapp",
               "fedsilo.serverapp", *ABOVE_RUNTIME),
    "client": ("fedsilo.server", "fedsilo.simulation", "fedsilo.clientapp",
               "fedsilo.serverapp", *ABOVE_RUNTIME),
    "simulation": ABOVE_RUNTIME,
    # The app API: records and messages know only common/; a ClientApp runs on the client
    # side, a ServerApp on the server side, and neither knows the other.
    "app": ("fedsilo.client", "fedsilo.server", "fedsilo.simulation", "fedsilo.clientapp",
            "fedsilo.serverapp", *ABOVE_RUNTIME),
    "clientapp": ("fedsilo.server", "fedsilo.serverapp", "fedsilo.simulation", *ABOVE_RUNTIME),
    "serverapp": ("fedsilo.client", "fedsilo.clientapp", "fedsilo.simulation", *ABOVE_RUNTIME),
    "deploy": ("fedsilo.cli", "fedsilo.examples"),
    "cli": ("fedsilo.examples",),
    "examples": ("fedsilo.cli",),
}
# The commands that run a shipped example, and so may import it.
ALLOWED = {("cli", "demo.py"), ("cli", "simulate.py"), ("cli", "fraud_data.py")}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def offenders(package: Path, layer: str) -> list[str]:
    """Each ``file imports module`` in ``package/layer`` that the layer's rule forbids."""
    return [
        f"{path.relative_to(package)} imports {name}"
        for path in sorted((package / layer).rglob("*.py"))
        if (layer, path.name) not in ALLOWED
        for name in imported_modules(path)
        if any(name == top or name.startswith(top + ".") for top in FORBIDDEN[layer])
    ]


def test_every_package_has_a_rule() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")} - {"proto"}
    assert packages <= set(FORBIDDEN), sorted(packages - set(FORBIDDEN))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    if not (PACKAGE / layer).is_dir():
        pytest.skip(f"fedsilo.{layer} does not exist (yet)")
    assert not offenders(PACKAGE, layer)


def test_a_deploy_module_importing_an_example_is_caught(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "orchestrator.py").write_text(
        "def run():\n    from fedsilo.examples.fraud.model import new_model\n")
    (tmp_path / "deploy" / "sandbox.py").write_text("import fedsilo.examples.fraud\n")
    assert offenders(tmp_path, "deploy") == [
        "deploy/orchestrator.py imports fedsilo.examples.fraud.model",
        "deploy/sandbox.py imports fedsilo.examples.fraud",
    ]


def test_only_serde_reaches_the_generated_protobuf_code() -> None:
    offending = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "proto" not in path.parts and path.name != "serde.py"
        and any(n.startswith("fedsilo.proto") for n in imported_modules(path))
    ]
    assert not offending, offending

"""An app directory as Flower lays it out: ``pyproject.toml`` with
``[tool.flwr.app.components]`` (``serverapp``, ``clientapp``), ``[tool.flwr.app.config]``
(the run config; nested tables become dotted keys) and ``[tool.flwr.federations]``
(``default`` and, per federation, ``options.num-supernodes``)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.app._context import UserConfig
from fedsilo.common.config import flatten_dict

__all__ = ["AppProject", "AppProjectError", "load_app_project", "parse_run_config"]


class AppProjectError(ValueError):
    """An app directory or run config that cannot be used; the text says what to fix."""


@dataclass(frozen=True)
class AppProject:
    """What an app directory's ``pyproject.toml`` says.

    Parameters
    ----------
    root:
        The app directory (absolute).
    serverapp, clientapp:
        ``module:attribute`` of the two apps.
    run_config:
        ``[tool.flwr.app.config]``, flattened to dotted keys.
    federations:
        Each federation's table; ``default_federation`` names the one used by default.
    """

    root: Path
    serverapp: str
    clientapp: str
    run_config: UserConfig
    federations: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_federation: str | None = None

    def federation(self, name: str | None) -> tuple[str, dict[str, Any]]:
        """The named federation's name and options (the default one for None)."""
        chosen = name or self.default_federation
        if chosen is None:
            raise AppProjectError(f"{self.root / 'pyproject.toml'} names no default federation; "
                                  "give one, or set [tool.flwr.federations] default")
        if chosen not in self.federations:
            known = ", ".join(sorted(self.federations)) or "none"
            raise AppProjectError(f"no federation {chosen!r} in {self.root / 'pyproject.toml'} "
                                  f"(it has: {known})")
        options = self.federations[chosen].get("options", {})
        if not isinstance(options, dict):
            raise AppProjectError(f"federation {chosen!r}: options must be a table")
        return chosen, options


def _table(data: dict[str, Any], path: str, where: Path) -> dict[str, Any]:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            raise AppProjectError(f"{where} has no [{path}] table")
    if not isinstance(value, dict):
        raise AppProjectError(f"[{path}] in {where} must be a table")
    return value


def load_app_project(root: str | Path) -> AppProject:
    """Read ``root/pyproject.toml``; ``AppProjectError`` names what is missing."""
    root = Path(root).resolve()
    path = root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise AppProjectError(f"{root} is not an app directory: it has no pyproject.toml") \
            from exc
    except tomllib.TOMLDecodeError as exc:
        raise AppProjectError(f"{path} is not valid TOML: {exc}") from exc
    components = _table(data, "tool.flwr.app.components", path)
    for key in ("serverapp", "clientapp"):
        reference = components.get(key)
        if not isinstance(reference, str) or ":" not in reference:
            raise AppProjectError(f"[tool.flwr.app.components] in {path} needs {key} = "
                                  "\"package.module:attribute\"")
    try:
        config = _table(data, "tool.flwr.app.config", path)
    except AppProjectError:
        config = {}
    federations = dict(data.get("tool", {}).get("flwr", {}).get("federations", {}))
    default = federations.pop("default", None)
    return AppProject(root=root, serverapp=components["serverapp"],
                      clientapp=components["clientapp"], run_config=flatten_dict(config),
                      federations={k: v for k, v in federations.items() if isinstance(v, dict)},
                      default_federation=default if isinstance(default, str) else None)


_PAIRS = re.compile(r"""[^\s=]+=(?:"[^"]*"|'[^']*'|\S*)|\S+""")
"""One ``key=value`` (a quoted value may hold spaces), or any other word."""


def parse_run_config(text: str, known: UserConfig | None = None) -> UserConfig:
    """``"k=v k2=v2"`` (TOML values; a bare word is a string) or a path to a TOML file, as
    a flat run config. With ``known``, a key that is not in it is refused."""
    if text.strip().endswith(".toml") and Path(text.strip()).is_file():
        parsed = flatten_dict(tomllib.loads(Path(text.strip()).read_text()))
    else:
        parsed = {}
        for pair in _PAIRS.findall(text):
            key, sep, raw = pair.partition("=")
            if not sep or not key:
                raise AppProjectError(f"run config {pair!r} is not key=value")
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw  # a bare word: a string, as a shell user would mean it
            parsed[key] = value
    for key, value in parsed.items():
        if not isinstance(value, bool | int | float | str):
            raise AppProjectError(f"run config {key!r}: {value!r} is not a bool, number or "
                                  "string")
        if known is not None and key not in known:
            raise AppProjectError(f"run config {key!r} is not in [tool.flwr.app.config] (it "
                                  f"has: {', '.join(sorted(known))})")
    return parsed

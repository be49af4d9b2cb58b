"""Every boto3 request checked against its service model as the real service reads it.

botocore's own client-side check (``ParamValidationError``) looks at types, required members
and minimum lengths only. The services also enforce each string's ``pattern`` (matched against
the whole value: ``.*`` does not cross a newline), maximum lengths, ``enum`` values and the
bounds of numbers and lists. :class:`StrictRequests` hooks every botocore session created
while it is installed (through botocore's built-in handler list, read when a session is made)
on ``before-parameter-build``, so each request fedsilo sends is checked before it leaves, and
records it for the test to inspect. A violation raises the ``ClientError``
(``ValidationException``) the service would have answered, and is kept in ``violations``.
"""

from __future__ import annotations

import re as _re
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.handlers
import regex  # AWS patterns use \p{L} and friends, which the standard library's re lacks
from botocore.exceptions import ClientError
from botocore.model import OperationModel, Shape

__all__ = ["SentRequest", "StrictRequests", "check_request", "install_handlers"]

# Java-style escapes for astral code points (\u10000) read as \u1000 followed by "0" here.
_ASTRAL = _re.compile(r"\\u(1[0-9A-Fa-f]{4})")
_BEGIN_PEM = "-----BEGIN"


@dataclass(frozen=True)
class SentRequest:
    service: str
    operation: str
    params: dict[str, Any]


def install_handlers(monkeypatch: Any, *handlers: tuple[str, Any]) -> None:
    """Register ``handlers`` on every botocore session made until the test ends.

    boto3's default session is dropped for the test too, so ``boto3.client`` builds a new
    one that has them, and no later test inherits them.
    """
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS",
                        [*botocore.handlers.BUILTIN_HANDLERS, *handlers])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def _pattern(text: str) -> regex.Pattern[str]:
    return regex.compile(_ASTRAL.sub(lambda m: f"\\U{int(m.group(1), 16):08X}", text))


def check_request(model: OperationModel, params: dict[str, Any]) -> list[str]:
    """Every rule of ``model``'s input shape that ``params`` breaks (empty when it is valid)."""
    problems: list[str] = []
    if model.input_shape is not None:
        _check(model.input_shape, params, model.name, problems)
    if model.name == "CreateTrainingJob":
        for key, value in params.get("HyperParameters", {}).items():
            if "\n" in value or "\r" in value or _BEGIN_PEM in value:
                problems.append(f"HyperParameters[{key}]: a multi-line or PEM value")
    return problems


def _check(shape: Shape, value: Any, where: str, problems: list[str]) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a structure")
            return
        for name in shape.required_members:
            if name not in value:
                problems.append(f"{where}.{name}: required")
        for name, item in value.items():
            if name not in shape.members:
                problems.append(f"{where}.{name}: unknown member")
            else:
                _check(shape.members[name], item, f"{where}.{name}", problems)
        return
    if kind == "list":
        _bounds(len(value), meta, f"{where} (items)", problems)
        for i, item in enumerate(value):
            _check(shape.member, item, f"{where}[{i}]", problems)
        return
    if kind == "map":
        _bounds(len(value), meta, f"{where} (entries)", problems)
        for key, item in value.items():
            _check(shape.key, key, f"{where} key {key!r}", problems)
            _check(shape.value, item, f"{where}[{key}]", problems)
        return
    if kind == "string":
        if not isinstance(value, str):
            problems.append(f"{where}: expected a string")
            return
        _bounds(len(value), meta, where, problems)
        if "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):
            problems.append(f"{where}: {value[:80]!r} does not match {meta['pattern']!r}")
        if shape.enum and value not in shape.enum:
            problems.append(f"{where}: {value!r} is not one of {shape.enum}")
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where}: expected an integer")
            return
        _bounds(value, meta, where, problems)
        return
    if kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{where}: expected a boolean")


def _bounds(size: int, meta: dict[str, Any], where: str, problems: list[str]) -> None:
    if "min" in meta and size < meta["min"]:
        problems.append(f"{where}: {size} is below the minimum {meta['min']}")
    if "max" in meta and size > meta["max"]:
        problems.append(f"{where}: {size} is above the maximum {meta['max']}")


@dataclass
class StrictRequests:
    """Install with :meth:`install` (a pytest ``monkeypatch``); then read ``sent``."""

    sent: list[SentRequest] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def install(self, monkeypatch: Any) -> StrictRequests:
        install_handlers(monkeypatch, ("before-parameter-build", self._on_request))
        return self

    def _on_request(self, params: dict[str, Any], model: OperationModel,
                    **_: Any) -> None:
        service = model.service_model.service_name
        self.sent.append(SentRequest(service, model.name, dict(params)))
        problems = check_request(model, params)
        if problems:
            self.violations.extend(problems)
            raise ClientError({"Error": {"Code": "ValidationException",
                                         "Message": "; ".join(problems)}}, model.name)

    def operations(self, service: str) -> list[str]:
        return [r.operation for r in self.sent if r.service == service]

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [r.params for r in self.sent if r.operation == operation]

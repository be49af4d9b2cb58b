"""Policy documents in IAM's shape, and their evaluation: deny by default, explicit deny wins.

A document is ``{"Version": "2012-10-17", "Statement": [...]}``; a statement has ``Effect``
(``Allow`` or ``Deny``), ``Action`` (a name such as ``job:CreateTrainingJob`` or a pattern with
``*`` and ``?``), ``Resource`` (ARNs or patterns; permission policies) or ``Principal`` (trust
policies), and an optional ``Condition``. The subset understood here is the one a site needs;
anything else (``NotAction``, unknown condition operators) is refused when the document is
loaded rather than silently ignored, so a site never runs with a policy it did not mean.

Evaluation follows IAM's order: an explicit ``Deny`` that matches ends it; otherwise a matching
``Allow`` allows; otherwise the request is denied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from fedsilo.deploy.errors import ValidationError

__all__ = [
    "CONDITION_OPERATORS",
    "Decision",
    "PolicyDocument",
    "Statement",
    "matches",
]

VERSION = "2012-10-17"
CONDITION_OPERATORS = ("StringEquals", "StringNotEquals", "StringLike", "StringNotLike")
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource", "Principal", "Condition"}


@dataclass(frozen=True)
class Decision:
    """The outcome of an evaluation and the statement that decided it (None: implicit deny)."""

    allowed: bool
    reason: str


@dataclass(frozen=True)
class Statement:
    """One statement, with its list-or-string fields normalised to tuples."""

    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...] = ()
    principals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    conditions: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    sid: str = ""

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Statement:
        if not isinstance(raw, Mapping):
            raise ValidationError(f"{where}: a statement must be a JSON object")
        unknown = set(raw) - _STATEMENT_KEYS
        if unknown:
            raise ValidationError(f"{where}: unsupported keys {sorted(unknown)}; a statement has "
                                  f"{sorted(_STATEMENT_KEYS)}")
        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise ValidationError(f"{where}: Effect must be 'Allow' or 'Deny', got {effect!r}")
        principals: dict[str, tuple[str, ...]] = {}
        principal = raw.get("Principal")
        if principal == "*":
            principals = {"*": ("*",)}
        elif principal is not None:
            if not isinstance(principal, Mapping):
                raise ValidationError(f"{where}: Principal must be '*' or an object such as "
                                      '{"Key": ["sha256:..."]}')
            principals = {str(k): _strings(v, f"{where}.Principal.{k}")
                          for k, v in principal.items()}
        conditions: dict[str, dict[str, tuple[str, ...]]] = {}
        for operator, tests in (raw.get("Condition") or {}).items():
            if operator not in CONDITION_OPERATORS:
                raise ValidationError(f"{where}: condition operator {operator!r} is not "
                                      f"supported; use one of {', '.join(CONDITION_OPERATORS)}")
            if not isinstance(tests, Mapping):
                raise ValidationError(f"{where}: Condition.{operator} must be an object")
            conditions[operator] = {str(k): _strings(v, f"{where}.Condition.{operator}.{k}")
                                    for k, v in tests.items()}
        return cls(
            effect=effect,
            actions=_strings(raw.get("Action"), f"{where}.Action"),
            resources=_strings(raw["Resource"], f"{where}.Resource") if "Resource" in raw else (),
            principals=principals,
            conditions=conditions,
            sid=str(raw.get("Sid", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Effect": self.effect, "Action": list(self.actions)}
        if self.sid:
            out = {"Sid": self.sid, **out}
        if self.resources:
            out["Resource"] = list(self.resources)
        if self.principals:
            out["Principal"] = ("*" if "*" in self.principals
                                else {k: list(v) for k, v in self.principals.items()})
        if self.conditions:
            out["Condition"] = {op: {k: list(v) for k, v in tests.items()}
                                for op, tests in self.conditions.items()}
        return out

    def applies(self, action: str, resource: str | None, principal: Mapping[str, str] | None,
                context: Mapping[str, str]) -> bool:
        """Whether the statement covers this request (its effect is the caller's business)."""
        if not any(matches(p, action, case_sensitive=False) for p in self.actions):
            return False
        if resource is not None and not any(matches(p, resource) for p in self.resources):
            return False
        if principal is not None and not self._principal_matches(principal):
            return False
        return all(_condition_holds(op, key, values, context)
                   for op, tests in self.conditions.items() for key, values in tests.items())

    def _principal_matches(self, principal: Mapping[str, str]) -> bool:
        if "*" in self.principals:
            return True
        return any(kind in principal and any(matches(p, principal[kind]) for p in patterns)
                   for kind, patterns in self.principals.items())


@dataclass(frozen=True)
class PolicyDocument:
    """A parsed policy; :meth:`evaluate` answers one request."""

    statements: tuple[Statement, ...]
    version: str = VERSION

    @classmethod
    def from_dict(cls, raw: Any, name: str = "policy") -> PolicyDocument:
        """Parse and check a document; a single statement object is accepted as in IAM."""
        if not isinstance(raw, Mapping):
            raise ValidationError(f"{name}: a policy document must be a JSON object")
        version = raw.get("Version", VERSION)
        if version != VERSION:
            raise ValidationError(f"{name}: Version must be {VERSION!r}, got {version!r}")
        statements = raw.get("Statement")
        if isinstance(statements, Mapping):
            statements = [statements]
        if not isinstance(statements, list) or not statements:
            raise ValidationError(f"{name}: Statement must be a non-empty list of statements")
        return cls(tuple(Statement.from_dict(s, f"{name}.Statement[{i}]")
                         for i, s in enumerate(statements)), version)

    def to_dict(self) -> dict[str, Any]:
        return {"Version": self.version, "Statement": [s.to_dict() for s in self.statements]}

    def evaluate(
        self,
        action: str,
        resource: str | None = None,
        *,
        principal: Mapping[str, str] | None = None,
        context: Mapping[str, str] | None = None,
    ) -> Decision:
        """Allow only when an Allow statement matches and no Deny statement does.

        ``resource`` is checked against ``Resource`` (permission policies), ``principal``
        (kind to identity, e.g. ``{"Key": "sha256:..."}``) against ``Principal`` (trust
        policies); pass the one the document is about.
        """
        context = context or {}
        allowed_by = None
        for statement in self.statements:
            if not statement.applies(action, resource, principal, context):
                continue
            if statement.effect == "Deny":
                return Decision(False, f"explicitly denied by statement "
                                       f"{statement.sid or self.statements.index(statement)}")
            allowed_by = allowed_by or statement
        if allowed_by is None:
            return Decision(False, "no statement allows it (denied by default)")
        return Decision(True, f"allowed by statement "
                              f"{allowed_by.sid or self.statements.index(allowed_by)}")


def matches(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM wildcard matching: ``*`` is any run of characters, ``?`` any one character."""
    return _compiled(pattern, case_sensitive).fullmatch(value) is not None


@lru_cache(maxsize=512)
def _compiled(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    body = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(body, 0 if case_sensitive else re.IGNORECASE)


def _condition_holds(operator: str, key: str, values: Sequence[str],
                     context: Mapping[str, str]) -> bool:
    actual = context.get(key)
    if actual is None:  # IAM: a condition on a key the request lacks does not hold
        return operator in ("StringNotEquals", "StringNotLike")
    if operator == "StringEquals":
        return actual in values
    if operator == "StringNotEquals":
        return actual not in values
    if operator == "StringLike":
        return any(matches(v, actual) for v in values)
    return not any(matches(v, actual) for v in values)  # StringNotLike


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValidationError(f"{where} must be a string or a non-empty list of strings")

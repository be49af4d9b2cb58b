"""Policy documents in IAM's shape, checked as IAM checks them, evaluated in IAM's order.

A document is ``{"Version": "2012-10-17", "Statement": [...]}``. A statement has ``Effect``
(``Allow`` or ``Deny``), exactly one of ``Action`` / ``NotAction`` (``job:CreateTrainingJob``,
patterns with ``*`` and ``?``; case-insensitive), and an optional ``Condition`` (see
:mod:`fedsilo.deploy.conditions`). What else it needs depends on where the document is:

- a permission policy (``kind="identity"``) needs exactly one of ``Resource`` / ``NotResource``
  (``*`` or ARN patterns, case-sensitive) and may not name a ``Principal``;
- a trust policy (``kind="trust"``) needs a ``Principal`` (``"*"`` or ``{"Key": [...],
  "Certificate": [...]}`` fingerprints, each exact or ``"*"``, never a partial wildcard), may
  not name a ``Resource``, and its actions are ``sts:`` ones.

Anything IAM would refuse (a missing or extra field, an unknown version or operator, a partial
wildcard in a principal, a policy variable, a duplicated ``Sid``) is refused when the document
is read, with the reason, so a site never runs a policy that means less than it says. No
library in reach evaluates IAM documents with their conditions for a namespace other than
AWS's (moto's evaluator ignores resources and conditions), so the grammar lives here.

Evaluation: a matching ``Deny`` ends it (denied); otherwise a matching ``Allow`` allows;
otherwise the request is denied by default. The decision names the statement that decided.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fedsilo.deploy.conditions import Condition, Value, parse_conditions
from fedsilo.deploy.errors import ValidationError
from fedsilo.deploy.wildcards import has_wildcard, matches

__all__ = ["Decision", "PolicyDocument", "PolicyKind", "Statement", "matches"]

VERSION = "2012-10-17"
PolicyKind = Literal["identity", "trust"]
PRINCIPAL_KINDS = ("Key", "Certificate")
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
                   "Principal", "NotPrincipal", "Condition"}
_ACTION = re.compile(r"\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+")
_SID = re.compile(r"[A-Za-z0-9]*")


@dataclass(frozen=True)
class Decision:
    """The outcome of an evaluation, why, and the statement that decided (None: by default)."""

    allowed: bool
    reason: str
    statement: str | None = None


@dataclass(frozen=True)
class Statement:
    """One checked statement; ``label`` names it in decisions (its Sid, else its position)."""

    effect: str
    actions: tuple[str, ...]
    label: str
    not_actions: bool = False
    resources: tuple[str, ...] = ()
    not_resources: bool = False
    principals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_dict(cls, raw: Any, where: str, kind: PolicyKind, label: str) -> Statement:
        if not isinstance(raw, Mapping):
            raise ValidationError(f"{where}: a statement must be a JSON object")
        unknown = set(raw) - _STATEMENT_KEYS
        if unknown:
            raise ValidationError(f"{where}: unknown keys {sorted(unknown)}; a statement has "
                                  f"{sorted(_STATEMENT_KEYS - {'NotPrincipal'})}")
        if "NotPrincipal" in raw:
            raise ValidationError(f"{where}: NotPrincipal is not supported; name the "
                                  "principals in Principal")
        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise ValidationError(f"{where}: Effect must be 'Allow' or 'Deny', got {effect!r}")
        action_key = _exactly_one(raw, "Action", "NotAction", where)
        actions = _strings(raw[action_key], f"{where}.{action_key}")
        for action in actions:
            if not _ACTION.fullmatch(action):
                raise ValidationError(f"{where}: action {action!r} must be '*' or "
                                      "'<service>:<action>' (wildcards in the action only)")
        resources: tuple[str, ...] = ()
        resource_key = None
        principals: dict[str, tuple[str, ...]] = {}
        if kind == "identity":
            if "Principal" in raw:
                raise ValidationError(f"{where}: a permission policy may not name a Principal "
                                      "(that belongs in a role's trust policy)")
            resource_key = _exactly_one(raw, "Resource", "NotResource", where)
            resources = _strings(raw[resource_key], f"{where}.{resource_key}")
            for resource in resources:
                _check_resource(resource, where)
        else:
            if "Resource" in raw or "NotResource" in raw:
                raise ValidationError(f"{where}: a trust policy may not name a Resource (the "
                                      "role is the resource)")
            if "Principal" not in raw:
                raise ValidationError(f"{where}: a trust policy statement needs a Principal")
            principals = _principals(raw["Principal"], where)
            if any(not a.lower().startswith("sts:") for a in actions):
                raise ValidationError(f"{where}: a trust policy allows or denies sts: actions "
                                      f"only, got {list(actions)}")
        return cls(effect=effect, actions=actions, label=label,
                   not_actions=action_key == "NotAction", resources=resources,
                   not_resources=resource_key == "NotResource", principals=principals,
                   conditions=parse_conditions(raw.get("Condition"), where))

    def applies(self, action: str, resource: str | None, principal: Mapping[str, str] | None,
                context: Mapping[str, Value]) -> bool:
        """Whether the statement covers this request (its effect is the caller's business)."""
        named = any(matches(p, action, case_sensitive=False) for p in self.actions)
        if named == self.not_actions:
            return False
        if self.resources:  # a request without a resource never meets a statement with one
            named = resource is not None and any(matches(p, resource) for p in self.resources)
            if resource is None or named == self.not_resources:
                return False
        if self.principals and (principal is None or not self._principal_matches(principal)):
            return False
        return all(c.holds(context) for c in self.conditions)

    def _principal_matches(self, principal: Mapping[str, str]) -> bool:
        if "*" in self.principals:
            return True
        return any(kind in principal and ("*" in names or principal[kind] in names)
                   for kind, names in self.principals.items())


@dataclass(frozen=True)
class PolicyDocument:
    """A parsed policy; :meth:`evaluate` answers one request. ``source`` is the document."""

    statements: tuple[Statement, ...]
    source: str
    kind: PolicyKind = "identity"

    @classmethod
    def from_dict(cls, raw: Any, name: str = "policy",
                  kind: PolicyKind = "identity") -> PolicyDocument:
        """Parse and check a document; a single statement object is accepted as in IAM."""
        if not isinstance(raw, Mapping):
            raise ValidationError(f"{name}: a policy document must be a JSON object")
        extra = set(raw) - {"Version", "Id", "Statement"}
        if extra:
            raise ValidationError(f"{name}: unknown keys {sorted(extra)}; a document has "
                                  "Version, Id and Statement")
        # A missing Version is IAM's older grammar, which differs in policy variables only,
        # and those are refused here.
        if raw.get("Version", VERSION) != VERSION:
            raise ValidationError(f"{name}: Version must be {VERSION!r}, got "
                                  f"{raw.get('Version')!r}")
        statements = raw.get("Statement")
        if isinstance(statements, Mapping):
            statements = [statements]
        if not isinstance(statements, list) or not statements:
            raise ValidationError(f"{name}: Statement must be a non-empty list of statements")
        sids = [s.get("Sid", "") for s in statements if isinstance(s, Mapping)]
        for sid in sids:
            if not isinstance(sid, str) or not _SID.fullmatch(sid):
                raise ValidationError(f"{name}: Sid {sid!r} may hold letters and digits only")
        repeated = sorted({s for s in sids if s and sids.count(s) > 1})
        if repeated:
            raise ValidationError(f"{name}: Sid {repeated[0]!r} is used twice; Sids are "
                                  "unique within a policy")
        parsed = tuple(
            Statement.from_dict(s, f"{name}.Statement[{i}]", kind,
                                f"{name}.{(s.get('Sid') if isinstance(s, Mapping) else '') or i}")
            for i, s in enumerate(statements))
        return cls(parsed, json.dumps(raw, sort_keys=True), kind)

    def to_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.source))

    def evaluate(
        self,
        action: str,
        resource: str | None = None,
        *,
        principal: Mapping[str, str] | None = None,
        context: Mapping[str, Value] | None = None,
    ) -> Decision:
        """Allow only when an Allow statement matches and no Deny statement does.

        Parameters
        ----------
        action:
            The action asked for, e.g. ``job:CreateTrainingJob``.
        resource:
            The ARN it acts on (permission policies).
        principal:
            Kind to identity, e.g. ``{"Key": "sha256:..."}`` (trust policies).
        context:
            Condition keys of the request (any case) to a value or a list of values.
        """
        context = context or {}
        allowed_by = None
        for statement in self.statements:
            if not statement.applies(action, resource, principal, context):
                continue
            if statement.effect == "Deny":
                return Decision(False, f"explicitly denied by statement {statement.label}",
                                statement.label)
            allowed_by = allowed_by or statement
        if allowed_by is None:
            return Decision(False, "no statement allows it (denied by default)")
        return Decision(True, f"allowed by statement {allowed_by.label}", allowed_by.label)


def _exactly_one(raw: Mapping[str, Any], key: str, negated: str, where: str) -> str:
    present = [k for k in (key, negated) if k in raw]
    if len(present) != 1:
        raise ValidationError(f"{where}: a statement needs exactly one of {key} and {negated}")
    return present[0]


def _check_resource(resource: str, where: str) -> None:
    if "${" in resource:
        raise ValidationError(f"{where}: policy variables ({resource!r}) are not supported")
    if resource != "*" and (not resource.startswith("arn:") or len(resource.split(":", 5)) < 6):
        raise ValidationError(f"{where}: resource {resource!r} must be '*' or an ARN "
                              "(arn:partition:service:region:account:resource)")


def _principals(raw: Any, where: str) -> dict[str, tuple[str, ...]]:
    if raw == "*":
        return {"*": ("*",)}
    if not isinstance(raw, Mapping) or not raw:
        raise ValidationError(f"{where}: Principal must be '*' or an object such as "
                              '{"Key": ["sha256:..."]}')
    out = {}
    for kind, values in raw.items():
        if kind not in PRINCIPAL_KINDS:
            raise ValidationError(f"{where}: principal kind {kind!r} is unknown; use "
                                  f"{' or '.join(PRINCIPAL_KINDS)}")
        names = _strings(values, f"{where}.Principal.{kind}")
        for name in names:
            if name != "*" and has_wildcard(name):
                raise ValidationError(f"{where}: principal {name!r} has a partial wildcard; "
                                      "a principal is exact, or '*' for everyone")
        out[kind] = names
    return out


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValidationError(f"{where} must be a string or a non-empty list of strings")

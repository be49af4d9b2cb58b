"""IAM's condition operators: parsed and checked when a policy loads, evaluated per request.

An operator name is ``[ForAnyValue:|ForAllValues:]<Base>[IfExists]``. The bases understood are
the string, numeric, date, Bool, Arn and Null families; anything else (IpAddress, Binary...)
is refused when the document loads. Condition keys compare case-insensitively, and only the
keys a site's requests carry (:data:`CONTEXT_KEYS`) may be named: a key that no request ever
has would make its condition silently never hold (and a Deny with it never apply).

IAM's rules for a key the request lacks: a positive operator does not hold, a negated one
(``StringNotEquals``, ``ArnNotLike``, ...) holds, ``...IfExists`` holds, ``ForAnyValue`` does not
hold and ``ForAllValues`` holds (vacuously). ``Null`` tests presence itself.
"""

from __future__ import annotations

import operator as op
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fedsilo.deploy.errors import ValidationError
from fedsilo.deploy.wildcards import arn_matches, matches

__all__ = ["CONTEXT_KEYS", "Condition", "parse_conditions", "request_context"]

# The keys a site puts in a request's context, in their canonical spelling.
CONTEXT_KEYS = ("aws:CurrentTime", "aws:EpochTime", "aws:SecureTransport",
                "aws:SourceIdentity", "sts:ExternalId", "sts:RoleSessionName",
                "sts:DurationSeconds", "fedsilo:RoleSessionName", "fedsilo:PrincipalKey",
                "fedsilo:PrincipalCertificate")
_KNOWN_KEYS = {k.lower(): k for k in CONTEXT_KEYS}

Value = str | list[str]


def _number(text: str) -> float:
    return float(text)


def _date(text: str) -> float:
    """Seconds since the epoch from epoch seconds or ISO 8601 (UTC when no zone is given)."""
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _bool(text: str) -> str:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"{text!r} is not true or false")
    return text.lower()


@dataclass(frozen=True)
class _Base:
    """One operator family member: how to read values and compare one pair."""

    parse: Callable[[str], Any]
    compare: Callable[[Any, Any], bool]
    negated: bool = False


def _ordered(parse: Callable[[str], Any]) -> dict[str, _Base]:
    family = "Numeric" if parse is _number else "Date"
    return {
        f"{family}Equals": _Base(parse, op.eq),
        f"{family}NotEquals": _Base(parse, op.eq, negated=True),
        f"{family}LessThan": _Base(parse, op.lt),
        f"{family}LessThanEquals": _Base(parse, op.le),
        f"{family}GreaterThan": _Base(parse, op.gt),
        f"{family}GreaterThanEquals": _Base(parse, op.ge),
    }


def _like(actual: str, pattern: str) -> bool:
    return matches(pattern, actual)


def _same_folded(actual: str, expected: str) -> bool:
    return actual.casefold() == expected.casefold()


_BASES: dict[str, _Base] = {
    "StringEquals": _Base(str, op.eq),
    "StringNotEquals": _Base(str, op.eq, negated=True),
    "StringEqualsIgnoreCase": _Base(str, _same_folded),
    "StringNotEqualsIgnoreCase": _Base(str, _same_folded, negated=True),
    "StringLike": _Base(str, _like),
    "StringNotLike": _Base(str, _like, negated=True),
    **_ordered(_number),
    **_ordered(_date),
    "Bool": _Base(_bool, op.eq),
    "ArnEquals": _Base(str, lambda a, p: arn_matches(p, a)),
    "ArnLike": _Base(str, lambda a, p: arn_matches(p, a)),
    "ArnNotEquals": _Base(str, lambda a, p: arn_matches(p, a), negated=True),
    "ArnNotLike": _Base(str, lambda a, p: arn_matches(p, a), negated=True),
}
OPERATORS = (*_BASES, "Null")


@dataclass(frozen=True)
class Condition:
    """One ``operator: {key: values}`` test of a statement."""

    operator: str  # as written
    key: str  # canonical spelling
    values: tuple[str, ...]

    @property
    def _parts(self) -> tuple[str, str, bool]:
        qualifier, _, rest = self.operator.rpartition(":")
        if_exists = rest.endswith("IfExists") and rest != "IfExists"
        return qualifier, rest.removesuffix("IfExists") if if_exists else rest, if_exists

    def holds(self, context: Mapping[str, Value]) -> bool:
        qualifier, base_name, if_exists = self._parts
        lowered = {k.lower(): v for k, v in context.items()}
        actual = lowered.get(self.key.lower())
        if base_name == "Null":  # "true": the key must be absent; "false": present
            return (actual is None) == (self.values[0].lower() == "true")
        present = [actual] if isinstance(actual, str) else list(actual or [])
        if not present:
            if if_exists or qualifier == "ForAllValues":
                return True
            return _BASES[base_name].negated and qualifier != "ForAnyValue"
        base = _BASES[base_name]
        expected = [base.parse(v) for v in self.values]

        def one(value: str) -> bool:
            try:
                parsed = base.parse(value)
            except ValueError:
                return False  # a context value of the wrong type never satisfies a test
            hit = any(base.compare(parsed, e) for e in expected)
            return not hit if base.negated else hit

        if qualifier == "ForAllValues":
            return all(one(v) for v in present)
        return any(one(v) for v in present)


def parse_conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    """Check a statement's ``Condition`` block as IAM would, and refuse what is not understood."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where}: Condition must be an object")
    out = []
    for operator, tests in raw.items():
        qualifier, _, rest = str(operator).rpartition(":")
        base = rest.removesuffix("IfExists") if rest != "IfExists" else rest
        if qualifier not in ("", "ForAnyValue", "ForAllValues") or base not in OPERATORS:
            raise ValidationError(
                f"{where}: condition operator {operator!r} is not supported; use one of "
                f"{', '.join(OPERATORS)}, optionally with ...IfExists or a ForAnyValue: / "
                "ForAllValues: prefix")
        if not isinstance(tests, Mapping) or not tests:
            raise ValidationError(f"{where}: Condition.{operator} must be a non-empty object")
        for key, values in tests.items():
            canonical = _KNOWN_KEYS.get(str(key).lower())
            if canonical is None:
                raise ValidationError(
                    f"{where}: condition key {key!r} is not in any request to this site "
                    f"(a condition on it would never hold); keys: {', '.join(CONTEXT_KEYS)}")
            listed = _condition_values(values, f"{where}.Condition.{operator}.{key}")
            checker = _bool if base == "Null" else _BASES[base].parse
            for value in listed:
                if "${" in value:
                    raise ValidationError(f"{where}: policy variables ({value!r}) are not "
                                          "supported")
                try:
                    checker(value)
                except ValueError as exc:
                    raise ValidationError(f"{where}: {operator} value {value!r} for {key}: "
                                          f"{exc}") from exc
            out.append(Condition(str(operator), canonical, listed))
    return tuple(out)


def _condition_values(value: Any, where: str) -> tuple[str, ...]:
    items: Sequence[Any] = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str | bool | int | float) for v in items):
        raise ValidationError(f"{where} must be a string, number or boolean, or a non-empty "
                              "list of them")
    return tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in items)


def request_context(principal: Mapping[str, str], session_name: str,
                    **extra: str | None) -> dict[str, Value]:
    """The context of a request to the agent: who (key and certificate fingerprints), the
    session's name, the time, TLS (always), and ``extra`` keys such as ``sts:ExternalId``;
    keys whose value is None are left out, as IAM leaves out what a request does not carry."""
    now = time.time()
    context: dict[str, str | None] = {
        "aws:CurrentTime": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aws:EpochTime": str(int(now)),
        "aws:SecureTransport": "true",
        "fedsilo:PrincipalKey": principal.get("Key"),
        "fedsilo:PrincipalCertificate": principal.get("Certificate"),
        "sts:RoleSessionName": session_name,
        "fedsilo:RoleSessionName": session_name,
        **extra,
    }
    unknown = set(context) - set(CONTEXT_KEYS)
    assert not unknown, f"context keys {unknown} must be listed in CONTEXT_KEYS"
    return {k: v for k, v in context.items() if v is not None}

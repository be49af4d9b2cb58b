"""IAM's wildcards: ``*`` any run of characters (``/`` and ``:`` included), ``?`` any one.

Every other character is literal, brackets too, which is why this is not :mod:`fnmatch` (whose
``[...]`` is a character class): the pattern is escaped whole and only the two wildcards are
turned back into regular-expression pieces.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["arn_matches", "has_wildcard", "matches"]


def matches(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """Whether ``value`` matches the IAM wildcard ``pattern`` as a whole."""
    return _compiled(pattern, case_sensitive).fullmatch(value) is not None


def has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def arn_matches(pattern: str, arn: str) -> bool:
    """ArnLike: the six colon-separated parts of an ARN match part by part (the last part,
    the resource, may itself hold colons)."""
    if pattern == "*":
        return True
    wanted, actual = pattern.split(":", 5), arn.split(":", 5)
    return (len(wanted) == len(actual) == 6
            and all(matches(w, a) for w, a in zip(wanted, actual, strict=True)))


@lru_cache(maxsize=1024)
def _compiled(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    body = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(body, re.DOTALL | (0 if case_sensitive else re.IGNORECASE))

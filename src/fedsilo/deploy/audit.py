"""The agent's audit trail: one JSON line per call, under the site, rotated by size.

Each line says when, from where, who (key fingerprint, session name, role), which route, every
authorization check made (action, resource, decision and the statement that decided it), the
job it concerned and the answer's status::

    {"time": "2026-01-01T12:00:00.123Z", "source": "10.0.0.5", "method": "POST",
     "path": "/jobs", "principal": "sha256:...", "session": "fl-site1", "role": "arn:...",
     "checks": [{"action": "job:CreateTrainingJob", "resource": "arn:...",
                 "decision": "Allow", "statement": "FL-kickoff-client-job.FL-job-actions.0"}],
     "job": "fl-site1-1", "status": 200, "error": null}

Files are ``audit/agent.jsonl`` and its rotations ``agent.jsonl.1`` (newest) to ``.N``, kept by
the standard library's rotating handler; :func:`read_audit` reads them back oldest first.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["AuditEntry", "AuditLog", "read_audit"]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5


@dataclass
class AuditEntry:
    """What one call did, filled in as the call goes on."""

    method: str
    path: str
    source: str | None = None
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z"))
    principal: str | None = None
    session: str | None = None
    role: str | None = None
    checks: list[dict[str, str | None]] = field(default_factory=list)
    job: str | None = None
    status: int | None = None
    error: str | None = None

    def check(self, action: str, resource: str, allowed: bool, statement: str | None) -> None:
        self.checks.append({"action": action, "resource": resource,
                            "decision": "Allow" if allowed else "Deny",
                            "statement": statement})


class AuditLog:
    """Appends :class:`AuditEntry` lines to ``path``, rotating it past ``max_bytes``.

    Parameters
    ----------
    path:
        The current file; rotations sit beside it with ``.1``, ``.2``, ... appended.
    max_bytes:
        Size at which the file is rotated.
    backups:
        How many rotated files are kept.
    """

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 backups: int = DEFAULT_BACKUPS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        self.path = path
        self._handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.Logger(f"fedsilo.audit.{path}")  # private: never propagates
        self._logger.addHandler(self._handler)

    def write(self, entry: AuditEntry) -> None:
        self._logger.info(json.dumps(asdict(entry), separators=(",", ":")))

    def close(self) -> None:
        self._handler.close()


def read_audit(path: Path) -> Iterator[dict[str, object]]:
    """Every entry of ``path`` and its rotations, oldest first."""
    rotated = sorted(path.parent.glob(path.name + ".*"),
                     key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
                     reverse=True)
    for file in [*rotated, path]:
        if not file.is_file():
            continue
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)

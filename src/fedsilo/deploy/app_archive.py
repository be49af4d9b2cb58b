"""An app as one content-addressed archive: the same files always give the same bytes.

:func:`pack_app` writes an app directory's regular files into a gzip tarball whose bytes depend
on the files' names, contents and executable bits only (sorted members, zero times, owner 0,
no gzip timestamp), so the archive's SHA-256 names the app: two parties who pack the same app
get the same digest, and a site can approve an app by that digest before it ever sees it.

In a site's code store an uploaded app lives at ``apps/<hex digest>.tar.gz``
(:func:`app_store_name`); a file there whose bytes do not hash to its name is refused.

A Flower app (its ``pyproject.toml`` names ``[tool.flwr.app.components]``) gets one more file
in its archive, :data:`FLOWER_JOB_ENTRY`: the site program that runs its ClientApp
(:mod:`fedsilo.deploy.flower_app_job`). It is the same for every app, so the digest still
depends on the app's files only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fedsilo.deploy.errors import ValidationError

__all__ = [
    "FLOWER_JOB_ENTRY",
    "AppArchive",
    "app_store_name",
    "digest_from_store_name",
    "is_flower_app",
    "pack_app",
    "sha256_hex",
]

APP_STORE_DIR = "apps"
_STORE_NAME = re.compile(rf"{APP_STORE_DIR}/([0-9a-f]{{64}})\.tar\.gz")
_SKIPPED_DIRS = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache"}
FLOWER_JOB_ENTRY = "fedsilo_clientapp_job.py"
_FLOWER_JOB = b'''"""Runs this app\'s ClientApp as a site job (added by fedsilo when packing)."""

from fedsilo.deploy.flower_app_job import main

main()
'''


@dataclass(frozen=True)
class AppArchive:
    """A packed app: its bytes and their SHA-256 (hex)."""

    data: bytes
    digest: str

    @property
    def store_name(self) -> str:
        return app_store_name(self.digest)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def app_store_name(digest: str) -> str:
    """Where an app with this digest lives in a site's code store."""
    return f"{APP_STORE_DIR}/{digest}.tar.gz"


def digest_from_store_name(name: str) -> str | None:
    """The digest an ``apps/<hex>.tar.gz`` name claims, or None for any other name."""
    match = _STORE_NAME.fullmatch(name)
    return match.group(1) if match else None


def is_flower_app(directory: Path) -> bool:
    """Whether ``directory/pyproject.toml`` names a ServerApp and a ClientApp, as Flower's do."""
    try:
        data = tomllib.loads((directory / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False
    components = data.get("tool", {}).get("flwr", {}).get("app", {}).get("components")
    return isinstance(components, dict) and {"serverapp", "clientapp"} <= components.keys()


def _member(name: str, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode, info.size = mode, size
    return info


def pack_app(directory: Path) -> AppArchive:
    """The app in ``directory`` as a reproducible gzip tarball (links and caches left out;
    a Flower app's job entry added)."""
    if not directory.is_dir():
        raise ValidationError(f"the app directory {directory} does not exist")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if any(part in _SKIPPED_DIRS for part in relative.parts) or path.suffix == ".pyc":
                continue
            if any((directory / parent).is_symlink() for parent in relative.parents):
                continue
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            if path.is_dir():
                info = _member(relative.as_posix(), 0o755)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            content = path.read_bytes()
            tar.addfile(_member(relative.as_posix(),
                                0o755 if path.stat().st_mode & 0o111 else 0o644, len(content)),
                        io.BytesIO(content))
        if is_flower_app(directory) and not (directory / FLOWER_JOB_ENTRY).exists():
            tar.addfile(_member(FLOWER_JOB_ENTRY, 0o644, len(_FLOWER_JOB)),
                        io.BytesIO(_FLOWER_JOB))
    if not any(p.is_file() for p in directory.rglob("*")):
        raise ValidationError(f"the app directory {directory} holds no files")
    data = gzip.compress(raw.getvalue(), mtime=0)
    return AppArchive(data, sha256_hex(data))

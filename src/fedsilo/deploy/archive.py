"""Tarballs in and out of a job: the source tarball unpacked safely, the model dir packed.

Extraction uses the standard library's ``data`` filter (PEP 706), which refuses absolute
names, ``..``, links that point outside the destination, device files and set-uid bits; on top
of that, a tarball whose members add up to more than ``max_bytes`` is refused before anything
is written. Packing stores regular files and directories only: a link in the model directory
is left out rather than followed, so a job cannot smuggle a file from elsewhere into its
artifact by linking to it.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from fedsilo.deploy.errors import UnsafePathError, ValidationError

__all__ = ["extract_source", "pack_directory"]

MAX_SOURCE_BYTES = 512 * 1024 * 1024


def extract_source(archive: Path, destination: Path, max_bytes: int = MAX_SOURCE_BYTES) -> None:
    """Unpack ``archive`` (.tar, .tar.gz) into ``destination``; raise on anything unsafe."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            total = sum(m.size for m in members if m.isfile())
            if total > max_bytes:
                raise ValidationError(f"{archive.name} unpacks to {total} bytes, more than "
                                      f"the {max_bytes} allowed")
            for member in members:  # the filter below enforces these too; this says why
                _check_member(member, archive.name)
            tar.extractall(destination, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafePathError(f"{archive.name}: refused member: {exc}") from exc
    except tarfile.TarError as exc:
        raise ValidationError(f"{archive.name} is not a readable tarball: {exc}") from exc


def _check_member(member: tarfile.TarInfo, name: str) -> None:
    parts = Path(member.name).parts
    if member.name.startswith("/") or ".." in parts:
        raise UnsafePathError(f"{name}: member {member.name!r} would be written outside the "
                              "job's code directory")
    if member.issym() or member.islnk():
        target = Path(member.linkname)
        base = Path(member.name).parent if member.issym() else Path()
        if target.is_absolute() or ".." in (base / target).parts:
            raise UnsafePathError(f"{name}: link {member.name!r} -> {member.linkname!r} "
                                  "points outside the job's code directory")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafePathError(f"{name}: member {member.name!r} is a device or special file")


def pack_directory(directory: Path, archive: Path) -> Path:
    """Write ``directory``'s regular files into the gzip tarball ``archive``."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        if directory.is_dir():
            for path in sorted(directory.rglob("*")):
                if path.is_symlink() or not (path.is_file() or path.is_dir()):
                    continue
                if "__pycache__" in path.parts or path.suffix == ".pyc":
                    continue
                if any(p.is_symlink() for p in path.relative_to(directory).parents
                       if p != Path(".") and (directory / p).is_symlink()):
                    continue
                tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    partial.replace(archive)
    return archive

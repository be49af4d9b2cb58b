"""Source tarballs are unpacked only when every member stays inside the job's directory."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from fedsilo.deploy.archive import extract_source, pack_directory
from fedsilo.deploy.errors import UnsafePathError, ValidationError


def _tar(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


@pytest.mark.parametrize("members", [
    [_file("../evil.py")],
    [_file("a/../../evil.py")],
    [_file("/tmp/evil.py")],
    [_link("data", "/etc")],
    [_link("data", "../../other-site/channels/train")],
    [_link("sub/up", "../../x")],
    [_link("hard", "/etc/passwd", hard=True)],
    [_link("inside", "sub"), _file("inside/../../x.py")],
], ids=["dotdot", "nested-dotdot", "absolute", "abs-symlink", "rel-symlink-out",
        "nested-symlink-out", "hardlink-out", "through-link"])
def test_unsafe_members_are_refused_and_nothing_lands_outside(tmp_path: Path,
                                                              members: list[object]) -> None:
    archive = _tar(tmp_path / "source.tar.gz", *members)  # type: ignore[arg-type]
    destination = tmp_path / "job" / "code"
    with pytest.raises(UnsafePathError):
        extract_source(archive, destination)
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "x.py").exists()
    assert not destination.exists() or not any(destination.iterdir())


def test_links_that_stay_inside_are_kept(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "s.tar.gz", _file("pkg/utils.py", b"X = 1\n"),
                   _link("utils.py", "pkg/utils.py"))
    extract_source(archive, tmp_path / "code")
    assert (tmp_path / "code" / "utils.py").read_text() == "X = 1\n"


def test_oversized_and_corrupt_tarballs_are_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "big.tar.gz", _file("a.bin", b"0" * 2048))
    with pytest.raises(ValidationError, match="more than"):
        extract_source(archive, tmp_path / "code", max_bytes=1024)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ValidationError, match="not a readable tarball"):
        extract_source(tmp_path / "junk.tar.gz", tmp_path / "code2")


def test_packing_keeps_files_and_leaves_links_out(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "model.joblib").write_bytes(b"weights")
    (model / "sub" / "notes.txt").write_text("n")
    secret = tmp_path / "channels" / "rows.csv"
    secret.parent.mkdir()
    secret.write_text("private rows")
    (model / "rows.csv").symlink_to(secret)
    (model / "linkdir").symlink_to(secret.parent)
    archive = pack_directory(model, tmp_path / "out" / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["model.joblib", "sub", "sub/notes.txt"]
        assert tar.extractfile("model.joblib").read() == b"weights"  # type: ignore[union-attr]

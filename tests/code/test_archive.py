from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ymera.code.archive import (
    ArchiveError,
    ArchiveLimits,
    _Entry,
    _Writer,
    detect_format,
    extract_archive,
)

Member = tuple[str, str, bytes | str]  # (kind, name, data or link target)


def make_zip(members: list[Member], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for kind, name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            if kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            elif kind == "fifo":
                info.external_attr = (stat.S_IFIFO | 0o644) << 16
            elif kind == "exe":
                info.external_attr = (stat.S_IFREG | 0o755) << 16
            elif kind == "dir":
                info.external_attr = (stat.S_IFDIR | 0o755) << 16
            else:
                info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
    return buf.getvalue()


_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chr": tarfile.CHRTYPE,
}


def make_tar(members: list[Member], mode: str = "w:gz", **pax: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            info.type = _TAR_TYPES[kind]
            info.pax_headers = dict(pax)
            if kind in ("symlink", "hardlink"):
                assert isinstance(data, str)
                info.linkname = data
                tf.addfile(info)
            elif kind == "file":
                raw = data.encode() if isinstance(data, str) else data
                info.size = len(raw)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(raw))
            else:
                info.mode = 0o755
                tf.addfile(info)
    return buf.getvalue()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "ws" / "out"


@pytest.fixture(autouse=True)
def _parent(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()


def assert_refused(data: bytes, dest: Path, code: str, **limits: float) -> ArchiveError:
    with pytest.raises(ArchiveError) as info:
        extract_archive(data, dest, limits=ArchiveLimits(**limits))  # type: ignore[arg-type]
    assert info.value.code == code, info.value.message
    assert not dest.exists() or not any(dest.iterdir())
    assert list(dest.parent.iterdir()) == ([dest] if dest.exists() else [])
    return info.value


GOOD: list[Member] = [
    ("dir", "pkg/", b""),
    ("file", "pkg/sub/deep/mod.py", b"print('hi')\n"),
    ("file", "README.md", b"# readme\n"),
    ("symlink", "pkg/link.py", "sub/deep/mod.py"),
    ("symlink", "docs", "pkg/sub"),
]


def test_good_zip_with_nested_dirs_and_inside_symlink(dest: Path) -> None:
    data = make_zip([*GOOD, ("exe", "bin/run.sh", b"#!/bin/sh\n")])
    result = extract_archive(data, dest)
    assert result.format == "zip"
    assert (result.files, result.symlinks) == (3, 2)
    assert (dest / "pkg/sub/deep/mod.py").read_bytes() == b"print('hi')\n"
    assert (dest / "pkg/link.py").is_symlink()
    assert (dest / "pkg/link.py").read_text() == "print('hi')\n"
    assert (dest / "docs/deep/mod.py").exists()
    assert (dest / "bin/run.sh").stat().st_mode & 0o100
    assert not (dest / "README.md").stat().st_mode & 0o111
    assert [p.name for p in dest.parent.iterdir()] == ["out"]


@pytest.mark.parametrize(
    ("mode", "fmt"), [("w", "tar"), ("w:gz", "tar.gz"), ("w:bz2", "tar.bz2"), ("w:xz", "tar.xz")]
)
def test_good_tar_formats_with_hard_link_copy(dest: Path, mode: str, fmt: str) -> None:
    data = make_tar([*GOOD, ("hardlink", "copy.md", "README.md")], mode)
    assert detect_format(data[:512]) == fmt
    result = extract_archive(data, dest)
    assert (result.format, result.files, result.symlinks) == (fmt, 3, 2)
    assert (dest / "copy.md").read_bytes() == b"# readme\n"
    assert not (dest / "copy.md").is_symlink()
    assert (dest / "copy.md").stat().st_ino != (dest / "README.md").stat().st_ino
    assert (dest / "pkg/link.py").read_text() == "print('hi')\n"


def test_extracts_from_a_path_into_an_existing_empty_directory(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "upload.bin"
    archive.write_bytes(make_zip([("file", "a.txt", b"a")]))
    dest.mkdir()
    extract_archive(archive, dest)
    assert (dest / "a.txt").read_text() == "a"


@pytest.mark.parametrize(
    "name", ["../evil", "a/../../evil", "/etc/x", "..\\evil", "C:/x", "c:evil", "a/\\b"]
)
def test_zip_names_that_could_escape_are_refused(dest: Path, name: str) -> None:
    data = make_zip([("file", "ok.txt", b"ok"), ("file", name, b"x")])
    error = assert_refused(data, dest, "unsafe_archive")
    assert error.details["member"] == name
    assert error.status_code == 422


@pytest.mark.parametrize("name", ["../evil", "/etc/x", "a/./../../b"])
def test_tar_names_that_could_escape_are_refused(dest: Path, name: str) -> None:
    assert_refused(make_tar([("file", "ok", "ok"), ("file", name, "x")]), dest, "unsafe_archive")


@pytest.mark.parametrize(
    "members",
    [
        [("symlink", "etc", "/etc")],
        [("symlink", "up", "../outside")],
        [("symlink", "a/b/up", "../../../outside")],
        [("symlink", "link", "sub"), ("file", "link/x", "written through the link")],
        [("symlink", "link", "/etc"), ("file", "link/passwd", "pwned")],
        [("file", "link/x", "x"), ("symlink", "link", "sub")],
        # Each link looks inside on its own; together b resolves to ../outside.
        [("symlink", "a", "."), ("symlink", "b", "a/../outside")],
        [("hardlink", "h", "../../etc/passwd")],
        [("hardlink", "h", "/etc/passwd")],
        [("hardlink", "h", "missing")],
        [("fifo", "pipe", b"")],
        [("chr", "dev", b"")],
        [("file", "a", "1"), ("file", "a", "2")],
    ],
    ids=lambda m: "+".join(f"{k}:{n}" for k, n, _ in m),
)
def test_unsafe_tar_members_are_refused(dest: Path, members: list[Member]) -> None:
    assert_refused(make_tar([("file", "sub/ok", "ok"), *members]), dest, "unsafe_archive")


@pytest.mark.parametrize(
    "members",
    [
        [("symlink", "etc", "/etc")],
        [("symlink", "up", "../x")],
        [("symlink", "l", "d"), ("file", "l/x", b"x")],
        [("fifo", "pipe", b"")],
    ],
)
def test_unsafe_zip_members_are_refused(dest: Path, members: list[Member]) -> None:
    assert_refused(make_zip([("file", "d/ok", b"ok"), *members]), dest, "unsafe_archive")


def test_zip_bomb_exceeds_the_ratio_limit(dest: Path) -> None:
    data = make_zip([("file", "bomb.txt", b"\0" * (8 * 1024 * 1024))])
    assert len(data) < 20_000
    error = assert_refused(data, dest, "archive_too_large", max_ratio=100)
    assert error.details["limit"] == "ratio"
    assert error.status_code == 413


def test_small_compressible_archive_is_within_the_ratio_grace(dest: Path) -> None:
    extract_archive(make_zip([("file", "zeros", b"\0" * 100_000)]), dest)
    assert (dest / "zeros").stat().st_size == 100_000


@pytest.mark.parametrize("maker", [make_zip, make_tar])
def test_too_many_members(dest: Path, maker: Callable[[list[Member]], bytes]) -> None:
    data = maker([("file", f"f{i}", b"") for i in range(11)])
    error = assert_refused(data, dest, "archive_too_large", max_members=10)
    assert error.details["limit"] == "members"


@pytest.mark.parametrize("maker", [make_zip, make_tar])
def test_total_size_limit(dest: Path, maker: Callable[[list[Member]], bytes]) -> None:
    data = maker([("file", "a", b"a" * 600), ("file", "b", b"b" * 600)])
    error = assert_refused(data, dest, "archive_too_large", max_total_bytes=1000)
    assert error.details["limit"] == "total_bytes"


def test_zip_whose_header_understates_the_size_is_refused(dest: Path) -> None:
    real = b"\0" * (4 * 1024 * 1024)
    data = bytearray(make_zip([("file", "liar", real)]))
    # Patch the uncompressed size in the local header (offset 22) and the central
    # directory entry (offset 24): both now claim 10 bytes.
    data[22:26] = (10).to_bytes(4, "little")
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    with pytest.raises(ArchiveError):
        extract_archive(bytes(data), dest, limits=ArchiveLimits(max_total_bytes=1024 * 1024))
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_written_bytes_are_counted_whatever_the_header_says(tmp_path: Path) -> None:
    writer = _Writer(tmp_path, ArchiveLimits(max_total_bytes=100_000), archive_size=10**9)
    liar = _Entry("liar", "file", size=1, open=lambda: io.BytesIO(b"x" * 1_000_000))
    with pytest.raises(ArchiveError) as info:
        writer.add(liar)
    assert info.value.details["limit"] == "total_bytes"
    assert (tmp_path / "liar").stat().st_size <= 100_000


def test_oversized_tar_header_is_not_buffered(dest: Path) -> None:
    # A PAX record of 3 MB: tarfile would read the whole header into memory.
    data = make_tar([("file", "a", "a")], comment="x" * 3_000_000)
    assert len(data) < 50_000
    limits = {"max_total_bytes": 512 * 1024, "max_members": 10}
    assert_refused(data, dest, "archive_too_large", **limits)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world" * 100, gzip.compress(b"not a tar at all" * 100), b"Rar!\x1a\x07\x00"],
    ids=["empty", "text", "gzip-not-tar", "rar"],
)
def test_unsupported_archives(dest: Path, data: bytes) -> None:
    error = assert_refused(data, dest, "unsupported_archive")
    assert error.status_code == 415


def test_truncated_archive_is_invalid(dest: Path) -> None:
    data = make_tar([("file", "a", b"a" * 100_000), ("file", "b", b"b" * 100_000)], "w")
    assert_refused(data[:70_000], dest, "invalid_archive")


def test_corrupt_zip_data_is_invalid(dest: Path) -> None:
    data = bytearray(make_zip([("file", "a", b"abc" * 1000)], compression=zipfile.ZIP_STORED))
    data[100] ^= 0xFF  # inside the stored data: CRC mismatch
    assert_refused(bytes(data), dest, "invalid_archive")


def test_destination_must_be_empty(dest: Path) -> None:
    dest.mkdir()
    (dest / "keep").write_text("mine")
    with pytest.raises(ArchiveError) as info:
        extract_archive(make_zip([("file", "a", b"a")]), dest)
    assert (info.value.code, info.value.status_code) == ("destination_not_empty", 409)
    assert [p.name for p in dest.iterdir()] == ["keep"]


def test_refusal_keeps_an_existing_empty_destination_empty(dest: Path) -> None:
    dest.mkdir()
    assert_refused(make_zip([("file", "a", b"a"), ("file", "../b", b"b")]), dest, "unsafe_archive")
    assert dest.is_dir()

"""Unpack an uploaded archive into a fresh directory, safely and all-or-nothing.

Supported: zip, tar, tar.gz, tar.bz2 and tar.xz, told apart by their first bytes
(never by a file name). The rules:

- Member names must be relative POSIX paths: no leading ``/``, no drive letter,
  no backslash, no NUL, no ``..`` component. ``.`` and empty components are
  dropped.
- Regular files and directories are extracted; device, FIFO and socket members
  are refused. A name may appear twice only as a directory; a file may not be
  written below a file or a symlink.
- Symlinks are kept when they stay inside: the target must be relative, must not
  leave the root lexically, and, once every symlink exists, its real path must
  lie inside the root (which catches chains such as ``a -> .`` and
  ``b -> a/../x``). Symlinks are created after every file and directory, so
  nothing is ever written through one.
- Tar hard links must name a regular file extracted earlier; they become an
  independent copy (counted against the size limit).
- Limits (:class:`ArchiveLimits`) are enforced on the bytes really written, not
  on the headers: the total unpacked size, the ratio of unpacked bytes to the
  archive's size (past a small grace allowance) and the member count. The
  decompressed tar stream is capped too, so an oversized header cannot make us
  buffer it.
- Extraction happens in a hidden staging directory beside the destination,
  which is renamed into place only when every member passed; on any refusal the
  staging directory is removed and the destination is left as it was (absent or
  empty).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, Protocol

from ymera.code.errors import EditorError

ArchiveFormat = Literal["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"]
_Kind = Literal["file", "dir", "symlink", "hardlink"]

_CHUNK = 64 * 1024
_MAX_LINK_TARGET = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")
# Errors the stdlib readers raise on corrupt or truncated data.
_READ_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
)


class ArchiveError(EditorError):
    """An uploaded archive was refused; nothing was extracted.

    Keyword arguments become ``details`` (``member``, ``limit``, ...).
    """

    status_code = 422
    code = "unsafe_archive"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, details=details)


class UnsafeArchive(ArchiveError):
    """A member could escape the destination or is not a plain file, directory or link."""

    status_code = 422
    code = "unsafe_archive"


class InvalidArchive(ArchiveError):
    """The archive is corrupt or truncated."""

    status_code = 422
    code = "invalid_archive"


class ArchiveTooLarge(ArchiveError):
    """Past a limit: ``details["limit"]`` is ``total_bytes``, ``ratio`` or ``members``."""

    status_code = 413
    code = "archive_too_large"


class UnsupportedArchive(ArchiveError):
    status_code = 415
    code = "unsupported_archive"


class DestinationNotEmpty(ArchiveError):
    status_code = 409
    code = "destination_not_empty"


@dataclass(frozen=True)
class ArchiveLimits:
    max_total_bytes: int = 256 * 1024 * 1024
    max_members: int = 20_000
    max_ratio: float = 100.0
    # The ratio limit applies only once this many bytes were unpacked, so a tiny
    # archive of a few very compressible files is not refused.
    ratio_grace_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class ExtractResult:
    format: ArchiveFormat
    files: int
    directories: int
    symlinks: int
    total_bytes: int


@dataclass(frozen=True)
class _Entry:
    name: str
    kind: _Kind
    size: int = 0
    executable: bool = False
    target: str = ""
    open: Callable[[], IO[bytes]] | None = None


def detect_format(head: bytes) -> ArchiveFormat:
    """The archive format from its first 512 bytes."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith(b"BZh"):
        return "tar.bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "tar.xz"
    if head[257:262] == b"ustar":
        return "tar"
    raise UnsupportedArchive("Not a zip or tar archive (gzip, bzip2, xz or plain)")


def extract_archive(
    source: bytes | Path, dest: Path, *, limits: ArchiveLimits | None = None
) -> ExtractResult:
    """Unpack ``source`` (the archive's bytes or a path to it) into ``dest``.

    ``dest`` must not exist or be an empty directory; its parent must exist.
    Raises an :class:`ArchiveError` subclass on refusal, leaving ``dest`` as it was.
    """
    limits = limits or ArchiveLimits()
    dest = Path(dest)
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise DestinationNotEmpty("Destination exists and is not an empty directory")
    with _open_source(source) as (fh, size):
        fmt = detect_format(fh.read(512))
        fh.seek(0)
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
        try:
            writer = _Writer(staging, limits, size)
            if fmt == "zip":
                with _open_zip(fh) as zf:
                    for entry in _zip_entries(zf, limits):
                        writer.add(entry)
            else:
                with _open_tar(fh, fmt, limits) as tf:
                    for entry in _tar_entries(tf, staging):
                        writer.add(entry)
            writer.finish()
            staging.chmod(0o755)
            os.rename(staging, dest)  # replaces an empty directory atomically
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return ExtractResult(fmt, writer.files, writer.dirs, len(writer.links), writer.written)


@contextmanager
def _open_source(source: bytes | Path) -> Iterator[tuple[BinaryIO, int]]:
    if isinstance(source, bytes):
        yield BytesIO(source), len(source)
        return
    with open(source, "rb") as fh:
        yield fh, os.fstat(fh.fileno()).st_size


@contextmanager
def _open_zip(fh: BinaryIO) -> Iterator[zipfile.ZipFile]:
    try:
        zf = zipfile.ZipFile(fh)
    except _READ_ERRORS as exc:
        raise InvalidArchive(f"Corrupt zip archive: {exc}") from exc
    with zf:
        yield zf


@contextmanager
def _open_tar(fh: BinaryIO, fmt: ArchiveFormat, limits: ArchiveLimits) -> Iterator[tarfile.TarFile]:
    # Headers, padding and PAX records come on top of the member data.
    cap = limits.max_total_bytes + 3 * 512 * limits.max_members + 1024 * 1024
    with ExitStack() as stack:
        raw: _Readable = fh
        if fmt == "tar.gz":
            raw = stack.enter_context(gzip.GzipFile(fileobj=fh, mode="rb"))
        elif fmt == "tar.bz2":
            raw = stack.enter_context(bz2.BZ2File(fh))
        elif fmt == "tar.xz":
            raw = stack.enter_context(lzma.LZMAFile(fh))
        try:
            # Stream mode: members are read in order, never seeking back.
            reader = _CappedReader(raw, cap)
            tf = stack.enter_context(tarfile.open(fileobj=reader, mode="r|"))  # type: ignore[call-overload]
        except tarfile.ReadError as exc:
            raise UnsupportedArchive(f"Not a tar archive inside {fmt}: {exc}") from exc
        except _READ_ERRORS as exc:
            raise InvalidArchive(f"Corrupt {fmt} archive: {exc}") from exc
        yield tf


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _CappedReader:
    """A read-only stream that refuses to deliver more than ``cap`` bytes in total."""

    def __init__(self, raw: _Readable, cap: int) -> None:
        self._raw = raw
        self._cap = cap
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        room = self._cap - self._read + 1  # one byte more than allowed tells "too much"
        data = self._raw.read(room if size is None or size < 0 else min(size, room))
        self._read += len(data)
        if self._read > self._cap:
            raise ArchiveTooLarge("Archive unpacks past the size limit", limit="total_bytes")
        return data


def _zip_entries(zf: zipfile.ZipFile, limits: ArchiveLimits) -> Iterator[_Entry]:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise _too_many(limits)
    for info in infos:
        if info.flag_bits & 0x1:
            raise UnsupportedArchive(
                "Encrypted zip members are not supported", member=info.filename
            )
        mode = info.external_attr >> 16
        ftype = stat.S_IFMT(mode)
        if info.is_dir():
            yield _Entry(info.filename, "dir")
        elif ftype == stat.S_IFLNK:
            yield _Entry(info.filename, "symlink", target=_zip_link_target(zf, info))
        elif ftype in (0, stat.S_IFREG):
            yield _Entry(
                info.filename,
                "file",
                size=info.file_size,
                executable=bool(mode & 0o111),
                open=lambda info=info: zf.open(info),  # type: ignore[misc]
            )
        else:
            raise UnsafeArchive("Special file in archive", member=info.filename)


def _zip_link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    if info.file_size > _MAX_LINK_TARGET:
        raise UnsafeArchive("Symlink target too long", member=info.filename)
    try:
        with zf.open(info) as fh:
            raw = fh.read(_MAX_LINK_TARGET + 1)
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeArchive("Symlink target is not UTF-8", member=info.filename) from exc
    except (*_READ_ERRORS, NotImplementedError, RuntimeError) as exc:
        raise InvalidArchive(f"Unreadable member: {exc}", member=info.filename) from exc


_FILTER_REASONS: dict[type[tarfile.FilterError], str] = {
    tarfile.AbsolutePathError: "absolute path",
    tarfile.OutsideDestinationError: "path outside the destination",
    tarfile.SpecialFileError: "special file",
    tarfile.AbsoluteLinkError: "absolute link target",
    tarfile.LinkOutsideDestinationError: "link target outside the destination",
}


def _tar_entries(tf: tarfile.TarFile, staging: Path) -> Iterator[_Entry]:
    while True:
        try:
            member = tf.next()
        except ArchiveError:
            raise
        except _READ_ERRORS as exc:
            raise InvalidArchive(f"Corrupt tar archive: {exc}") from exc
        if member is None:
            return
        _check_name(member.name)  # before the filter, which strips a leading "/"
        try:
            tarfile.data_filter(member, str(staging))
        except tarfile.FilterError as exc:
            # The stdlib's message names our staging path: keep it out of the reply.
            reason = _FILTER_REASONS.get(type(exc), "it could escape the destination")
            raise UnsafeArchive(f"Refused member: {reason}", member=member.name) from exc
        if member.isreg():
            yield _Entry(
                member.name,
                "file",
                size=member.size,
                executable=bool(member.mode & 0o100),
                open=lambda member=member: _extractfile(tf, member),  # type: ignore[misc]
            )
        elif member.isdir():
            yield _Entry(member.name, "dir")
        elif member.issym():
            yield _Entry(member.name, "symlink", target=member.linkname)
        elif member.islnk():
            yield _Entry(member.name, "hardlink", target=member.linkname)
        else:
            raise UnsafeArchive("Special file in archive", member=member.name)


def _extractfile(tf: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    fh = tf.extractfile(member)
    if fh is None:  # pragma: no cover - isreg() members always have data
        raise InvalidArchive("Member has no data", member=member.name)
    return fh


def _check_name(name: str) -> tuple[str, ...]:
    """The path components of a member name, refusing anything that could escape."""
    if not name or "\x00" in name or "\\" in name:
        raise UnsafeArchive("Member name has a NUL or a backslash", member=name)
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchive("Member name is absolute", member=name)
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive("Member name has a '..' component", member=name)
    return parts


def _too_many(limits: ArchiveLimits) -> ArchiveTooLarge:
    return ArchiveTooLarge(
        f"Archive has more than {limits.max_members} members",
        limit="members",
        max_members=limits.max_members,
    )


class _Writer:
    """Writes members into the staging root, keeping the tally the limits need."""

    def __init__(self, root: Path, limits: ArchiveLimits, archive_size: int) -> None:
        self.root = root
        self.limits = limits
        self.ratio_cap = max(limits.ratio_grace_bytes, limits.max_ratio * max(archive_size, 1))
        self.kinds: dict[tuple[str, ...], _Kind] = {}
        self.links: list[tuple[tuple[str, ...], str]] = []
        self.members = 0
        self.written = 0
        self.files = 0
        self.dirs = 0

    def add(self, entry: _Entry) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise _too_many(self.limits)
        parts = _check_name(entry.name)
        if not parts:
            if entry.kind == "dir":
                return
            raise UnsafeArchive("Member has an empty name", member=entry.name)
        self._claim(parts, entry)
        path = self.root.joinpath(*parts)
        try:
            if entry.kind == "dir":
                path.mkdir(mode=0o755, parents=True, exist_ok=True)
                self.dirs += 1
            elif entry.kind == "symlink":
                self._check_link(parts, entry)
                self.links.append((parts, entry.target))
            elif entry.kind == "hardlink":
                self._copy_hardlink(path, entry)
            else:
                assert entry.open is not None
                if self.written + entry.size > self.limits.max_total_bytes:
                    raise self._too_large()
                self._write(path, entry.open, executable=entry.executable)
        except OSError as exc:
            raise UnsafeArchive(f"Cannot write member: {exc.strerror}", member=entry.name) from exc

    def finish(self) -> None:
        """Create the symlinks, then check every one resolves inside the root."""
        try:
            for parts, target in self.links:
                path = self.root.joinpath(*parts)
                path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                os.symlink(target, path)
        except OSError as exc:
            raise UnsafeArchive(f"Cannot create symlink: {exc.strerror}") from exc
        real_root = os.path.realpath(self.root)
        for parts, _ in self.links:
            real = os.path.realpath(self.root.joinpath(*parts))
            if os.path.commonpath([real_root, real]) != real_root:
                raise UnsafeArchive("Symlink resolves outside the archive", member="/".join(parts))

    def _claim(self, parts: tuple[str, ...], entry: _Entry) -> None:
        for i in range(1, len(parts)):
            kind = self.kinds.setdefault(parts[:i], "dir")
            if kind != "dir":
                raise UnsafeArchive("Member lies below a file or symlink", member=entry.name)
        previous = self.kinds.get(parts)
        if previous is not None and not (previous == "dir" and entry.kind == "dir"):
            raise UnsafeArchive("Duplicate member", member=entry.name)
        self.kinds[parts] = "file" if entry.kind == "hardlink" else entry.kind

    def _check_link(self, parts: tuple[str, ...], entry: _Entry) -> None:
        target = entry.target
        if not target or "\x00" in target or "\\" in target:
            raise UnsafeArchive(
                "Symlink target is empty or has a NUL or backslash", member=entry.name
            )
        if target.startswith("/") or _DRIVE.match(target):
            raise UnsafeArchive("Symlink target is absolute", member=entry.name)
        depth = len(parts) - 1
        for part in target.split("/"):
            depth += -1 if part == ".." else 0 if part in ("", ".") else 1
            if depth < 0:
                raise UnsafeArchive("Symlink target leaves the archive", member=entry.name)

    def _copy_hardlink(self, path: Path, entry: _Entry) -> None:
        target = _check_name(entry.target)
        if self.kinds.get(target) != "file" or target == _check_name(entry.name):
            raise UnsafeArchive(
                "Hard link to a member that is not an earlier file", member=entry.name
            )
        source = self.root.joinpath(*target)
        executable = bool(source.stat().st_mode & 0o100)
        self._write(path, lambda: open(source, "rb"), executable=executable)  # noqa: SIM115

    def _write(self, path: Path, opener: Callable[[], IO[bytes]], *, executable: bool) -> None:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o755 if executable else 0o644)
        with os.fdopen(fd, "wb") as out:
            try:
                src = opener()
            except (*_READ_ERRORS, NotImplementedError, RuntimeError) as exc:
                raise InvalidArchive(f"Unreadable member: {exc}", member=path.name) from exc
            with src:
                while chunk := self._read(src, path):
                    self.written += len(chunk)
                    if self.written > self.limits.max_total_bytes:
                        raise self._too_large()
                    if self.written > self.ratio_cap:
                        raise ArchiveTooLarge(
                            f"Archive expands more than {self.limits.max_ratio:g} times",
                            limit="ratio",
                            max_ratio=self.limits.max_ratio,
                        )
                    out.write(chunk)
        self.files += 1

    @staticmethod
    def _read(src: IO[bytes], path: Path) -> bytes:
        try:
            return src.read(_CHUNK)
        except ArchiveError:
            raise
        except (*_READ_ERRORS, NotImplementedError, RuntimeError) as exc:
            raise InvalidArchive(f"Corrupt member data: {exc}", member=path.name) from exc

    def _too_large(self) -> ArchiveTooLarge:
        return ArchiveTooLarge(
            f"Archive unpacks to more than {self.limits.max_total_bytes} bytes",
            limit="total_bytes",
            max_total_bytes=self.limits.max_total_bytes,
        )

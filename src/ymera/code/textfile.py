"""Read and write text files so that an edit changes only what it means to change.

Preserved exactly: the encoding (UTF-8, UTF-8 with BOM, UTF-16/UTF-32 with BOM,
Latin-1 when it is recognised safely), every line ending (CRLF, LF, CR, mixed: the
text is never normalised, ``bytes.decode`` keeps ``\\r``), the final newline or its
absence, and tabs. Decoding is checked to round-trip byte for byte, so writing
back an unchanged text reproduces the original bytes.

Refused: binary content (a NUL byte in the first 8 KiB of a file without a BOM,
or bytes that are neither UTF-8 nor safe Latin-1) as :class:`BinaryFile`, and
files over ``max_bytes`` as :class:`TooLarge`.

Every write goes through :func:`atomic_write`: a temporary file in the same
directory, fsync, ``os.replace``, fsync of the directory; the file's mode is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ymera.code.errors import (
    BinaryFile,
    FileNotFound,
    InvalidText,
    NotAFile,
    TooLarge,
    Unencodable,
)

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
SNIFF_BYTES = 8 * 1024

# Longest BOMs first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
# Latin-1 is accepted only if every byte is printable ASCII, common whitespace or
# in 0xA0-0xFF: C0/C1 control bytes are what binary data is made of.
_LATIN1_SAFE = re.compile(rb"[\t\n\r\f\x20-\x7e\xa0-\xff]*")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class TextFile:
    """A decoded file: its text and how to turn it back into the same bytes."""

    text: str
    encoding: str  # a Python codec name, e.g. "utf-8", "utf-16-le", "latin-1"
    bom: bytes  # written before the encoded text (b"" when there was none)
    sha256: str  # hash of the bytes as read
    data: bytes = field(default=b"", repr=False)  # the bytes as read

    def encode(self, text: str) -> bytes:
        """``text`` in this file's encoding, BOM included."""
        return encode_text(text, self.encoding, self.bom)

    @property
    def newline(self) -> str:
        return dominant_newline(self.text)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_bytes(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, path: str = "") -> TextFile:
    """Decode file content, or raise :class:`BinaryFile` / :class:`TooLarge`."""
    if len(data) > max_bytes:
        raise TooLarge(
            f"{path or 'File'} is {len(data)} bytes; the limit is {max_bytes}",
            details={"path": path, "size": len(data), "limit": max_bytes},
        )
    digest = sha256_hex(data)
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _decode_exact(data[len(bom) :], encoding, path)
            return TextFile(text=text, encoding=encoding, bom=bom, sha256=digest, data=data)
    if b"\x00" in data[:SNIFF_BYTES]:
        raise _binary(path, "NUL byte")
    try:
        text = _decode_exact(data, "utf-8", path)
    except BinaryFile:
        if not _LATIN1_SAFE.fullmatch(data):
            raise
        text = data.decode("latin-1")
        return TextFile(text=text, encoding="latin-1", bom=b"", sha256=digest, data=data)
    return TextFile(text=text, encoding="utf-8", bom=b"", sha256=digest, data=data)


def _decode_exact(data: bytes, encoding: str, path: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _binary(path, f"not valid {encoding}") from exc
    if "\x00" in text:
        raise _binary(path, "NUL character")
    if text.encode(encoding) != data:  # defensive: only exact round-trips are editable
        raise _binary(path, f"{encoding} does not round-trip")
    return text


def _binary(path: str, why: str) -> BinaryFile:
    return BinaryFile(
        f"{path or 'File'} looks binary ({why}); only text files can be edited",
        details={"path": path, "reason": why},
    )


def encode_text(text: str, encoding: str = "utf-8", bom: bytes = b"") -> bytes:
    """``bom`` and ``text`` in ``encoding``: :class:`InvalidText` for a lone surrogate
    (no encoding writes one), :class:`Unencodable` for a character ``encoding`` lacks."""
    try:
        return bom + text.encode(encoding)
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        if all("\ud800" <= ch <= "\udfff" for ch in bad):
            raise InvalidText(
                f"The text holds the lone surrogate U+{ord(bad[0]):04X} at offset {exc.start}, "
                "which no encoding can write",
                details={"offset": exc.start},
            ) from exc
        raise Unencodable(
            f"The text holds {bad!r}, which {encoding} cannot encode",
            details={"encoding": encoding, "character": bad},
        ) from exc


def read_text_file(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, name: str = "") -> TextFile:
    """Read and decode ``path`` (``name`` is how errors call it)."""
    shown = name or path.name
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError) as exc:
        # NotADirectoryError: a parent is a file ("a.txt/x"), so no such file either.
        raise FileNotFound(f"No such file: {shown}", details={"path": shown}) from exc
    if stat.S_ISDIR(st.st_mode):
        raise NotAFile(f"{shown} is a directory", details={"path": shown})
    if not stat.S_ISREG(st.st_mode):
        raise NotAFile(f"{shown} is not a regular file", details={"path": shown})
    if st.st_size > max_bytes:
        raise TooLarge(
            f"{shown} is {st.st_size} bytes; the limit is {max_bytes}",
            details={"path": shown, "size": st.st_size, "limit": max_bytes},
        )
    return decode_bytes(path.read_bytes(), max_bytes=max_bytes, path=shown)


# --- lines ------------------------------------------------------------------------------


def split_lines(text: str) -> list[str]:
    """Lines with their endings (CRLF, LF or CR); unlike ``str.splitlines`` no other
    character (form feed, U+2028, ...) counts as a line break."""
    lines: list[str] = []
    start = 0
    for match in _LINE_BREAK.finditer(text):
        lines.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        lines.append(text[start:])
    return lines


def strip_ending(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def line_endings(text: str) -> Counter[str]:
    return Counter(m.group() for m in _LINE_BREAK.finditer(text))


def dominant_newline(text: str) -> str:
    """The most common line ending of ``text`` (``"\\n"`` if it has none)."""
    counts = line_endings(text)
    if not counts:
        return "\n"
    order = {"\n": 0, "\r\n": 1, "\r": 2}  # tie-break: LF, then CRLF
    return max(counts, key=lambda ending: (counts[ending], -order[ending]))


def uniform_newline(text: str) -> str | None:
    """The one line ending ``text`` uses, or None (mixed, or no line break at all)."""
    counts = line_endings(text)
    return next(iter(counts)) if len(counts) == 1 else None


def count_line_breaks(text: str) -> int:
    return sum(1 for _ in _LINE_BREAK.finditer(text))


def to_newline(text: str, newline: str) -> str:
    """``text`` with every line ending (CRLF, LF or CR) turned into ``newline``."""
    return _LINE_BREAK.sub(newline, text)


# --- writing ----------------------------------------------------------------------------


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(target: Path, tag: str = "") -> Path:
    """A hidden sibling of ``target`` (same directory, hence same filesystem)."""
    return target.with_name(f".{target.name}.{tag or secrets.token_hex(6)}.tmp")


def write_new_file(path: Path, data: bytes, *, mode: int | None = None, sync: bool = True) -> None:
    """Create ``path`` (which must not exist) with ``data`` and fsync it (unless
    ``sync`` is False: the caller makes it durable, e.g. with one ``os.sync()``
    for many files).

    Without ``mode`` the process umask applies, as for any new file.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "wb", closefd=False) as out:
            out.write(data)
            out.flush()
        if mode is not None:
            os.fchmod(fd, mode)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace (or create) ``path`` with ``data`` atomically and durably.

    The existing file's permission bits are kept unless ``mode`` is given.
    """
    if mode is None:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(path.stat().st_mode)
    tmp = temp_name(path)
    try:
        write_new_file(tmp, data, mode=mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_create(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` atomically, never overwriting: False if it exists.

    The content is written to a temporary file and hard-linked into place, so the
    file appears complete or not at all, and an existing file is never clobbered.
    """
    tmp = temp_name(path)
    write_new_file(tmp, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # no hard links here: check, then replace (a narrow race)
        if os.path.lexists(path):
            return False
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)
    return True

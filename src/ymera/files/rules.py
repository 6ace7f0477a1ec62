"""Pure helpers of the Files API: name sanitising, type sniffing, Range and
Content-Disposition headers. No I/O, no framework."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

MAX_NAME = 255
DEFAULT_NAME = "file"
#: Bytes of the body kept to sniff its type.
SNIFF_BYTES = 512
OCTET_STREAM = "application/octet-stream"

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),  # empty archive
    (b"\x1f\x8b", "application/gzip"),
)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def sanitise_name(name: str) -> str:
    """The last path segment of `name` (either slash), without control characters,
    trimmed and capped at 255 characters; `file` when nothing is left."""
    base = re.split(r"[/\\]", name)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    base = base.strip()
    if base in ("", ".", ".."):
        return DEFAULT_NAME
    return base[:MAX_NAME]


def sniff(head: bytes) -> str:
    """The media type told by the first bytes of a body (never by the client)."""
    for magic, media_type in _MAGIC:
        if head.startswith(magic):
            return media_type
    if b"\x00" in head:
        return OCTET_STREAM
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The head may end inside a multibyte character: that alone is no reason.
        if exc.start < len(head) - 3 or exc.reason != "unexpected end of data":
            return OCTET_STREAM
    return "text/plain; charset=utf-8"


class Unsatisfiable(ValueError):
    """A well-formed range that selects no byte of the file."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The `[start, end)` a `Range` header selects, or None to send the whole file
    (no header, a malformed one, another unit or several ranges: RFC 9110 lets a
    server ignore those). Raises `Unsatisfiable` for a range past the end."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(0, size - n), size
    start = int(first)
    if last and int(last) < start:
        return None  # invalid, so ignored
    if start >= size:
        raise Unsatisfiable(header)
    end = size if not last else min(int(last) + 1, size)
    return start, end


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback and the exact UTF-8 name (RFC 6266/8187)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ascii_name = "".join(ch if ch.isprintable() and ch not in '"\\' else "_" for ch in ascii_name)
    ascii_name = ascii_name.strip() or DEFAULT_NAME
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"

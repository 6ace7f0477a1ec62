"""The blob storage interface, its result type, key validation and shared helpers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

#: Size of the pieces read from a backend and handed to the caller.
READ_CHUNK = 256 * 1024
#: Writes to disk are batched to at least this size before leaving the event loop.
WRITE_CHUNK = 1024 * 1024

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_MAX_KEY_LENGTH = 1024


class BlobNotFound(LookupError):
    """No blob is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob stored under {key!r}")
        self.key = key


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """What `BlobStorage.put` wrote: the key, its length in bytes and its SHA-256 (hex)."""

    key: str
    size: int
    sha256: str


def validate_key(key: str) -> str:
    """Return `key` if it is a safe server-generated key, else raise ValueError.

    A key is one or more segments of `[A-Za-z0-9._-]` joined by `/`; no empty
    segment (so no leading, trailing or doubled `/`) and no `.` or `..` segment.
    """
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY_LENGTH:
        raise ValueError(f"invalid storage key: {key!r}")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise ValueError(f"invalid storage key: {key!r}")
    return key


def check_range(start: int, end: int | None) -> None:
    """Refuse a negative start or an end before the start (end is exclusive)."""
    if start < 0:
        raise ValueError(f"range start must be >= 0, got {start}")
    if end is not None and end < start:
        raise ValueError(f"range end {end} is before start {start}")


async def empty() -> AsyncIterator[bytes]:
    """An async iterator that yields nothing."""
    return
    yield b""  # pragma: no cover  (makes this an async generator)


@runtime_checkable
class BlobStorage(Protocol):
    """Where file bodies live. Keys come from the server, never from a client.

    `open` returns bytes `[start, end)` (end exclusive, clamped to the blob's
    size; `None` means to the end). It raises `BlobNotFound` when awaited, so a
    caller can answer 404 before streaming; iterate the result to the end or
    `aclose()` it to release the underlying file or connection.
    """

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredBlob:
        """Stream `chunks` into the blob `key`, replacing it atomically."""
        ...

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream a byte range of the blob `key`."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob `key`; no error if it does not exist."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether a blob is stored under `key`."""
        ...

    async def size(self, key: str) -> int:
        """The blob's length in bytes; `BlobNotFound` if it does not exist."""
        ...

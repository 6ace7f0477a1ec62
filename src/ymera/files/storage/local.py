"""Blobs as files under one root directory, written atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from anyio import to_thread

from ymera.files.storage.base import (
    READ_CHUNK,
    WRITE_CHUNK,
    BlobNotFound,
    StoredBlob,
    check_range,
    empty,
    validate_key,
)

TEMP_PREFIX = ".tmp-"


class LocalDiskStorage:
    """Each blob is the file `root/<key>`.

    A put streams into a temp file in the final directory, fsyncs it and
    `os.replace`s it into place, so readers see the old blob or the new one,
    never a half-written file; a failed or cancelled put removes its temp file.
    Disk I/O runs in worker threads (not cancellable midway, so cleanup never
    races a write).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredBlob:
        path = self.path_for(key)
        out, tmp = await to_thread.run_sync(_create_temp, path.parent)
        hasher = hashlib.sha256()
        size = 0
        pending = bytearray()
        try:
            async for chunk in chunks:
                pending += chunk
                size += len(chunk)
                if len(pending) >= WRITE_CHUNK:
                    await to_thread.run_sync(_write, out, hasher, bytes(pending))
                    pending.clear()
            await to_thread.run_sync(_write, out, hasher, bytes(pending))
            await to_thread.run_sync(_commit, out, tmp, path)
        except BaseException:
            _discard(out, tmp)
            raise
        return StoredBlob(key=key, size=size, sha256=hasher.hexdigest())

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        check_range(start, end)
        path = self.path_for(key)
        await self.size(key)
        if end is not None and end == start:
            return empty()
        return self._read(path, key, start, end)

    async def _read(
        self, path: Path, key: str, start: int, end: int | None
    ) -> AsyncIterator[bytes]:
        try:
            f = await to_thread.run_sync(_open_at, path, start)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        try:
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                data = await to_thread.run_sync(f.read, want)
                if not data:
                    return
                if remaining is not None:
                    remaining -= len(data)
                yield data
        finally:
            f.close()

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        await to_thread.run_sync(_unlink_missing_ok, path)

    async def exists(self, key: str) -> bool:
        return await to_thread.run_sync(self.path_for(key).is_file)

    async def size(self, key: str) -> int:
        path = self.path_for(key)
        try:
            return await to_thread.run_sync(_file_size, path)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(key) from None


def _create_temp(directory: Path) -> tuple[BinaryIO, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=".part")
    return os.fdopen(fd, "wb"), Path(name)


def _write(out: BinaryIO, hasher: hashlib._Hash, data: bytes) -> None:
    out.write(data)
    hasher.update(data)


def _commit(out: BinaryIO, tmp: Path, path: Path) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()
    os.replace(tmp, path)
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _discard(out: BinaryIO, tmp: Path) -> None:
    with contextlib.suppress(OSError):
        out.close()
    _unlink_missing_ok(tmp)


def _unlink_missing_ok(path: Path) -> None:
    path.unlink(missing_ok=True)


def _open_at(path: Path, start: int) -> BinaryIO:
    f = path.open("rb")
    f.seek(start)
    return f


def _file_size(path: Path) -> int:
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise FileNotFoundError(path)
    return st.st_size

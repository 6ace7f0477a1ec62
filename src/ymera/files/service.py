"""Rules of the Files API: who owns and sees a file, limits, sniffing, ranges.

A body streams from the request into blob storage in one pass that counts its
bytes (refusing past the limit at once), keeps its first bytes to sniff the type,
and lets the storage compute the size and SHA-256. The row is added only once the
blob is stored; a refused or failed upload leaves no blob behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.auth.permissions import Role
from ymera.auth.principal import Principal
from ymera.errors import Forbidden
from ymera.events.outbox import record_event
from ymera.files import repository
from ymera.files.errors import FileNotFound, FileTooLarge, RangeNotSatisfiable
from ymera.files.rules import SNIFF_BYTES, Unsatisfiable, parse_range, sanitise_name, sniff
from ymera.files.storage import BlobNotFound, BlobStorage
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.files import File


def owner_of(principal: Principal) -> str:
    """Whose a principal's uploads are: its agent for an agent key, else its user."""
    if principal.kind == "agent" and principal.agent_id:
        return f"agent:{principal.agent_id}"
    return f"user:{principal.user_id}"


def _sees_all(principal: Principal) -> bool:
    return principal.kind == "user" and principal.role in (Role.ADMIN, Role.OPERATOR)


def _can_see(principal: Principal, file: File) -> bool:
    return _sees_all(principal) or file.owner_id == owner_of(principal)


def _can_delete(principal: Principal, file: File) -> bool:
    admin = principal.kind == "user" and principal.role == Role.ADMIN
    return admin or file.owner_id == owner_of(principal)


def _too_large(limit: int) -> FileTooLarge:
    return FileTooLarge(f"The file is larger than the limit of {limit} bytes", limit=limit)


class _Metered:
    """Passes a body through, refusing it past `limit` bytes and keeping its head."""

    def __init__(self, body: AsyncIterator[bytes], limit: int) -> None:
        self.body = body
        self.limit = limit
        self.received = 0
        self.head = b""

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.body:
            self.received += len(chunk)
            if self.received > self.limit:
                raise _too_large(self.limit)
            if len(self.head) < SNIFF_BYTES:
                self.head += chunk[: SNIFF_BYTES - len(self.head)]
            yield chunk


async def upload(
    session: AsyncSession,
    *,
    storage: BlobStorage,
    principal: Principal,
    name: str,
    body: AsyncIterator[bytes],
    declared_size: int | None,
    limit: int,
    ttl_seconds: int | None,
    tags: list[str],
    now: datetime,
) -> File:
    """Store a body and its metadata; 413 `file_too_large` past `limit` bytes."""
    if declared_size is not None and declared_size > limit:
        raise _too_large(limit)
    file_id = new_id()
    metered = _Metered(body, limit)
    try:
        blob = await storage.put(file_id, metered.chunks())
        file = File(
            id=file_id,
            owner_id=owner_of(principal),
            name=sanitise_name(name),
            content_type=sniff(metered.head),
            size=blob.size,
            sha256=blob.sha256,
            storage_key=blob.key,
            created_at=now,
            expires_at=None if ttl_seconds is None else now + timedelta(seconds=ttl_seconds),
            tags=sorted(set(tags)),
        )
        await repository.add(session, file)
    except BaseException:
        with contextlib.suppress(Exception):
            await storage.delete(file_id)
        raise
    _event(session, file, "created", principal, size=file.size, content_type=file.content_type)
    return file


def _event(
    session: AsyncSession, file: File, kind: str, principal: Principal, **data: object
) -> None:
    record_event(
        session,
        type=f"file.{kind}",
        resource_type="file",
        resource_id=file.id,
        data={"name": file.name, "owner_id": file.owner_id, **data},
        actor=principal.id,
    )


async def get_file(
    session: AsyncSession, *, principal: Principal, file_id: str, now: datetime
) -> File:
    """A file the principal may see (404 `file_not_found` otherwise, or once expired)."""
    file = await repository.get(session, file_id, now=now)
    if file is None or not _can_see(principal, file):
        raise FileNotFound(f"No file {file_id}")
    return file


async def list_files(
    session: AsyncSession,
    *,
    principal: Principal,
    cursor: str | None,
    limit: int,
    now: datetime,
) -> Slice[File]:
    """Newest first: the principal's own files (admins and operators: everyone's)."""
    after = decode_cursor(cursor)
    before_id = str(after["id"]) if after and "id" in after else None
    rows = list(
        await repository.list_files(
            session,
            owner_id=None if _sees_all(principal) else owner_of(principal),
            before_id=before_id,
            now=now,
            limit=limit + 1,
        )
    )
    next_cursor = encode_cursor({"id": rows[limit - 1].id}) if len(rows) > limit else None
    return Slice(rows[:limit], next_cursor)


async def delete_file(
    session: AsyncSession, *, principal: Principal, file_id: str, now: datetime
) -> File:
    """Delete a file's row (its owner or an admin); the caller removes the blob
    (`storage_key`) once the deletion is committed."""
    file = await repository.get(session, file_id, now=now, for_update=True)
    if file is None or not _can_see(principal, file):
        raise FileNotFound(f"No file {file_id}")
    if not _can_delete(principal, file):
        raise Forbidden("Only the file's owner or an admin may delete it", code="not_file_owner")
    await repository.remove(session, file.id)
    _event(session, file, "deleted", principal)
    return file


@dataclass(frozen=True)
class Download:
    """A file's bytes `[start, end)` as chunks; `partial` when a range was asked."""

    file: File
    chunks: AsyncIterator[bytes]
    start: int
    end: int
    partial: bool


async def open_content(
    session: AsyncSession,
    *,
    storage: BlobStorage,
    principal: Principal,
    file_id: str,
    range_header: str | None,
    now: datetime,
) -> Download:
    """Open a file's body, or the single byte range `range_header` asks for (416
    `range_not_satisfiable` past the end; malformed or multiple ranges: all of it)."""
    file = await get_file(session, principal=principal, file_id=file_id, now=now)
    try:
        selected = parse_range(range_header, file.size)
    except Unsatisfiable:
        raise RangeNotSatisfiable(file.size) from None
    start, end = selected if selected is not None else (0, file.size)
    try:
        chunks = await storage.open(file.storage_key, start, end)
    except BlobNotFound:
        raise FileNotFound(f"No file {file_id}") from None
    return Download(file, chunks, start, end, partial=selected is not None)

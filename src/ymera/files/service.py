"""Rules of the Files API: who owns and sees a file, limits, sniffing, ranges.

A body streams from the request into blob storage in one pass that counts its
bytes (refusing past the limit at once), keeps its first bytes to sniff the type,
and lets the storage compute the size and SHA-256. The row is added only once the
blob is stored; a refused or failed upload leaves no blob behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.auth.permissions import Role
from ymera.auth.principal import Principal
from ymera.errors import Forbidden
from ymera.events.outbox import record_event
from ymera.files import repository
from ymera.files.errors import (
    FileNotFound,
    FileTooLarge,
    QuotaExceeded,
    RangeNotSatisfiable,
    TooManyFiles,
    UnknownFile,
)
from ymera.files.rules import SNIFF_BYTES, Unsatisfiable, parse_range, sanitise_name, sniff
from ymera.files.storage import BlobNotFound, BlobStorage, storage_from_url
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.chat import FileLink
from ymera.models.files import File

if TYPE_CHECKING:
    from ymera.state import AppState


def storage_of(state: AppState) -> BlobStorage:
    """The file bodies' storage (made on first use from `YMERA_FILES__STORAGE_URL`)."""
    storage = state.extras.get("files")
    if storage is None:
        settings = state.settings
        storage = storage_from_url(settings.files.storage_url, settings.data_dir)
        state.extras["files"] = storage
    assert isinstance(storage, BlobStorage)
    return storage


@dataclass(frozen=True)
class Quota:
    """What one owner may keep in unexpired files."""

    max_bytes: int
    max_files: int


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


def _over_quota(quota: Quota, used: int, size: int, *, at_least: bool = False) -> QuotaExceeded:
    needs = f"at least {size}" if at_least else str(size)
    return QuotaExceeded(
        f"The owner's quota of {quota.max_bytes} bytes would be exceeded: "
        f"{used} bytes in use, the file needs {needs}",
        quota_bytes=quota.max_bytes,
        used_bytes=used,
    )


class _Metered:
    """Passes a body through, refusing it past `limit` bytes (or past `room`, the
    owner's remaining quota) and keeping its head."""

    def __init__(
        self,
        body: AsyncIterator[bytes],
        limit: int,
        room: int,
        over_quota: Callable[[int], Exception],
    ) -> None:
        self.body = body
        self.limit = limit
        self.room = room
        self.over_quota = over_quota
        self.received = 0
        self.head = b""

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.body:
            self.received += len(chunk)
            if self.received > self.limit:
                raise _too_large(self.limit)
            if self.received > self.room:
                raise self.over_quota(self.received)
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
    quota: Quota,
    ttl_seconds: int | None,
    tags: list[str],
    now: datetime,
) -> File:
    """Store a body and its metadata; 413 `file_too_large` past `limit` bytes.

    The owner's unexpired files may not exceed `quota`: more files, 429
    `too_many_files`; more bytes, 413 `quota_exceeded` (checked on the declared
    length before reading, while reading, and on the real size once stored)."""
    if declared_size is not None and declared_size > limit:
        raise _too_large(limit)
    owner_id = owner_of(principal)
    count, used = await repository.usage(session, owner_id, now=now)
    if count + 1 > quota.max_files:
        raise TooManyFiles(
            f"The owner's quota of {quota.max_files} files would be exceeded: {count} files kept",
            quota_files=quota.max_files,
            used_files=count,
        )
    if declared_size is not None and used + declared_size > quota.max_bytes:
        raise _over_quota(quota, used, declared_size)
    file_id = new_id()
    metered = _Metered(
        body,
        limit,
        room=quota.max_bytes - used,
        over_quota=lambda size: _over_quota(quota, used, size, at_least=True),
    )
    try:
        blob = await storage.put(file_id, metered.chunks())
        # Again with the real size, counting what was committed meanwhile.
        count, used = await repository.usage(session, owner_id, now=now)
        if used + blob.size > quota.max_bytes:
            raise _over_quota(quota, used, blob.size)
        file = File(
            id=file_id,
            owner_id=owner_id,
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
    if file is None:
        raise FileNotFound(f"No file {file_id}")
    if not await _may_read(session, principal, file):
        raise FileNotFound(f"No file {file_id}")
    return file


async def _may_read(session: AsyncSession, principal: Principal, file: File) -> bool:
    return (
        _can_see(principal, file)
        or await _attached_to_held_task(session, principal, file)
        or await _attached_to_shared_chat(session, principal, file)
    )


async def _attached_to_shared_chat(session: AsyncSession, principal: Principal, file: File) -> bool:
    """The participants of a chat session read the files its messages carry."""
    message_ids = await repository.linked_ids(session, file.id, "chat_message")
    if not message_ids:
        return False
    from ymera.chat import service as chat_service

    return await chat_service.sees_messages(
        session, principal=principal, message_ids=list(message_ids)
    )


async def check_references(
    session: AsyncSession, *, principal: Principal, file_ids: list[str], now: datetime
) -> list[File]:
    """The files ``file_ids`` name, each live and readable by ``principal``; 422
    `unknown_file` (naming the first bad id) otherwise. For a task, a message or a
    workspace that references files."""
    wanted = list(dict.fromkeys(file_ids))
    found = {f.id: f for f in await repository.get_many(session, wanted, now=now)}
    for file_id in wanted:
        file = found.get(file_id)
        if file is None or not await _may_read(session, principal, file):
            raise UnknownFile(
                f"file_ids: {file_id!r} names no file you can read (unknown, expired or "
                "someone else's)",
                file_id=file_id,
            )
    return [found[i] for i in wanted]


async def attach(
    session: AsyncSession,
    *,
    file_ids: list[str],
    resource_type: str,
    resource_id: str,
    now: datetime,
) -> None:
    """Record that those files are attached to a resource (`task`, `chat_message`,
    `workspace`): shown in their metadata (`attached_to`)."""
    links = [
        FileLink(file_id=f, resource_type=resource_type, resource_id=resource_id, created_at=now)
        for f in dict.fromkeys(file_ids)
    ]
    if links:
        await repository.add_links(session, links)


async def attachments(
    session: AsyncSession, file_ids: list[str]
) -> dict[str, list[dict[str, str]]]:
    """What each file is attached to: ``{file id: [{"type": ..., "id": ...}]}``."""
    out: dict[str, list[dict[str, str]]] = {f: [] for f in file_ids}
    for link in await repository.links_of(session, file_ids):
        out.setdefault(link.file_id, []).append(
            {"type": link.resource_type, "id": link.resource_id}
        )
    return out


async def _attached_to_held_task(session: AsyncSession, principal: Principal, file: File) -> bool:
    """An agent may read the files attached to a task it holds (the worker SDK's
    ``ctx.download``), whoever uploaded them."""
    if principal.kind != "agent" or not principal.agent_id:
        return False
    from ymera.tasks import service as tasks_service

    return await tasks_service.agent_holds_file(
        session, agent_id=principal.agent_id, file_id=file.id
    )


async def list_files(
    session: AsyncSession,
    *,
    principal: Principal,
    cursor: str | None,
    limit: int,
    now: datetime,
    owner_id: str | None = None,
    tag: str | None = None,
    temporary: bool | None = None,
    attached_type: str | None = None,
) -> Slice[File]:
    """Newest first: the principal's own files (admins and operators: everyone's, or
    `owner_id`'s), optionally only those with `tag`, only temporary (or permanent)
    ones, only those attached to a resource of `attached_type`."""
    after = decode_cursor(cursor)
    before_id = str(after["id"]) if after and "id" in after else None
    owner = owner_id if _sees_all(principal) else owner_of(principal)
    rows = list(
        await repository.list_files(
            session,
            owner_id=owner,
            before_id=before_id,
            now=now,
            limit=limit + 1,
            tag=tag,
            temporary=temporary,
            attached_type=attached_type,
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


async def delete_expired(session: AsyncSession, *, now: datetime, limit: int) -> list[File]:
    """Delete up to `limit` expired files' rows, each with a `file.expired` event; the
    caller removes their blobs (`storage_key`) once the deletion is committed. Rows
    another sweeper holds or already deleted are skipped, so replicas can run it at once."""
    candidates = await repository.lock_expired(session, now=now, limit=limit)
    deleted = await repository.remove_expired(session, [f.id for f in candidates], now=now)
    files = [f for f in candidates if f.id in deleted]
    for file in files:
        record_event(
            session,
            type="file.expired",
            resource_type="file",
            resource_id=file.id,
            data={"name": file.name, "owner_id": file.owner_id, "size": file.size},
            actor="file-sweeper",
        )
    return files

"""Queries of the Files API (no rules)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, String, cast, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.models.chat import FileLink
from ymera.models.files import File


def _live(now: datetime) -> ColumnElement[bool]:
    return or_(File.expires_at.is_(None), File.expires_at > now)


async def add(session: AsyncSession, file: File) -> None:
    session.add(file)
    await session.flush()


async def get(
    session: AsyncSession, file_id: str, *, now: datetime, for_update: bool = False
) -> File | None:
    stmt = select(File).where(File.id == file_id, _live(now))
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_files(
    session: AsyncSession,
    *,
    owner_id: str | None,
    before_id: str | None,
    now: datetime,
    limit: int,
    tag: str | None = None,
    temporary: bool | None = None,
    attached_type: str | None = None,
) -> Sequence[File]:
    """Newest first (ids sort by creation); `owner_id` None: everyone's."""
    stmt = select(File).where(_live(now))
    if owner_id is not None:
        stmt = stmt.where(File.owner_id == owner_id)
    if tag is not None:
        # Tags are [A-Za-z0-9._:-]: their JSON text is the tag in quotes, on any backend.
        stmt = stmt.where(cast(File.tags, String).like(f'%"{tag}"%'))
    if temporary is not None:
        stmt = stmt.where(File.expires_at.is_not(None) if temporary else File.expires_at.is_(None))
    if attached_type is not None:
        linked = select(FileLink.file_id).where(FileLink.resource_type == attached_type)
        stmt = stmt.where(File.id.in_(linked))
    if before_id is not None:
        stmt = stmt.where(File.id < before_id)
    stmt = stmt.order_by(File.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def remove(session: AsyncSession, file_id: str) -> None:
    await session.execute(delete(File).where(File.id == file_id))


async def usage(session: AsyncSession, owner_id: str, *, now: datetime) -> tuple[int, int]:
    """An owner's unexpired files: how many, and their total size in bytes."""
    stmt = select(func.count(), func.coalesce(func.sum(File.size), 0)).where(
        File.owner_id == owner_id, _live(now)
    )
    count, size = (await session.execute(stmt)).one()
    return int(count), int(size)


async def lock_expired(session: AsyncSession, *, now: datetime, limit: int) -> Sequence[File]:
    """Up to `limit` expired files, locked (SKIP LOCKED on PostgreSQL, so replicas
    sweeping at once take different rows)."""
    stmt = (
        select(File)
        .where(File.expires_at.is_not(None), File.expires_at <= now)
        .order_by(File.expires_at, File.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def remove_expired(session: AsyncSession, file_ids: list[str], *, now: datetime) -> set[str]:
    """Delete those of `file_ids` that are still there and expired; their ids."""
    if not file_ids:
        return set()
    stmt = (
        delete(File)
        .where(File.id.in_(file_ids), File.expires_at <= now)
        .returning(File.id)
        .execution_options(synchronize_session=False)
    )
    return set((await session.execute(stmt)).scalars().all())


async def get_many(
    session: AsyncSession, file_ids: Sequence[str], *, now: datetime
) -> Sequence[File]:
    if not file_ids:
        return []
    stmt = select(File).where(File.id.in_(list(file_ids)), _live(now))
    return (await session.execute(stmt)).scalars().all()


async def add_links(session: AsyncSession, links: list[FileLink]) -> None:
    session.add_all(links)
    await session.flush()


async def links_of(session: AsyncSession, file_ids: Sequence[str]) -> Sequence[FileLink]:
    if not file_ids:
        return []
    stmt = (
        select(FileLink)
        .where(FileLink.file_id.in_(list(file_ids)))
        .order_by(FileLink.file_id, FileLink.created_at, FileLink.resource_type)
    )
    return (await session.execute(stmt)).scalars().all()


async def linked_ids(session: AsyncSession, file_id: str, resource_type: str) -> Sequence[str]:
    stmt = select(FileLink.resource_id).where(
        FileLink.file_id == file_id, FileLink.resource_type == resource_type
    )
    return (await session.execute(stmt)).scalars().all()

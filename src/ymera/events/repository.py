"""Every query on the events tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.models.events import Event, EventSequencer


async def list_after(
    session: AsyncSession,
    *,
    after: int,
    limit: int,
    types: Sequence[str] = (),
    type_prefixes: Sequence[str] = (),
    resource_type: str | None = None,
    resource_id: str | None = None,
) -> Sequence[Event]:
    stmt = select(Event).where(Event.seq > after)
    if types or type_prefixes:
        conds: list[ColumnElement[bool]] = [Event.type.in_(list(types))] if types else []
        conds += [Event.type.startswith(p, autoescape=True) for p in type_prefixes]
        stmt = stmt.where(or_(*conds))
    if resource_type is not None:
        stmt = stmt.where(Event.resource_type == resource_type)
    if resource_id is not None:
        stmt = stmt.where(Event.resource_id == resource_id)
    stmt = stmt.order_by(Event.seq).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def last_seq(session: AsyncSession) -> int:
    stmt = select(EventSequencer.last_seq).where(EventSequencer.id == 1)
    return (await session.execute(stmt)).scalar_one_or_none() or 0


async def delete_before(session: AsyncSession, cutoff: datetime, *, limit: int) -> int:
    """Delete up to ``limit`` of the oldest events, those older than ``cutoff``.
    Events are appended in time order, so the oldest are read off the primary key
    (never a scan of the table for a cutoff nothing is older than)."""
    oldest = (
        await session.execute(select(Event.seq, Event.created_at).order_by(Event.seq).limit(limit))
    ).all()
    seqs = [seq for seq, at in oldest if at < cutoff]
    if not seqs:
        return 0
    result = await session.execute(delete(Event).where(Event.seq.in_(seqs)))
    return int(getattr(result, "rowcount", 0) or 0)

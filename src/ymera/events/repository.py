"""Every query on the events tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.models.events import Event, EventSequencer


async def lock_sequencer(session: AsyncSession) -> int:
    """Take the sequencer row lock (PostgreSQL) and return the last assigned seq."""
    stmt = select(EventSequencer.last_seq).where(EventSequencer.id == 1).with_for_update()
    value = (await session.execute(stmt)).scalar_one_or_none()
    if value is None:
        session.add(EventSequencer(id=1, last_seq=0))
        await session.flush()
        return 0
    return value


async def sequence_pending(session: AsyncSession, *, last_seq: int, limit: int) -> list[Event]:
    """Give the oldest ``limit`` unsequenced events ``last_seq + 1 ...`` in id order,
    in one statement; returns them ordered by seq. Call under the sequencer lock."""
    ranked = (
        select(Event.id.label("id"), func.row_number().over(order_by=Event.id).label("rn"))
        .where(Event.seq.is_(None))
        .order_by(Event.id)
        .limit(limit)
        .subquery()
    )
    stmt = (
        update(Event)
        .where(Event.id == ranked.c.id)
        .values(seq=last_seq + ranked.c.rn)
        .returning(Event)
        .execution_options(synchronize_session=False)
    )
    rows = list((await session.execute(stmt)).scalars().all())
    rows.sort(key=lambda e: e.seq or 0)
    return rows


async def set_last_seq(session: AsyncSession, last_seq: int) -> None:
    await session.execute(
        update(EventSequencer).where(EventSequencer.id == 1).values(last_seq=last_seq)
    )


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
    stmt = select(Event).where(Event.seq.is_not(None), Event.seq > after)
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
    ids = select(Event.id).where(Event.created_at < cutoff, Event.seq.is_not(None)).limit(limit)
    result = await session.execute(delete(Event).where(Event.id.in_(ids)))
    return int(getattr(result, "rowcount", 0) or 0)

"""Record events inside the caller's unit of work (the transactional outbox).

Events are buffered on the session and written with one multi-row INSERT just
before the transaction commits (far cheaper than an ORM object per event); a
rollback drops the buffer. After commit the relay assigns each event its
sequence number and publishes it on the bus.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.db.database import EVENT_TYPES, OUTBOX_FLAG
from ymera.kit.clock import utcnow
from ymera.models.events import Event

_BUFFER = "ymera_event_buffer"
_INSERT = insert(cast(Table, Event.__table__))  # Core: compiled once, no ORM work per row


def record_event(
    session: AsyncSession,
    *,
    type: str,
    resource_type: str,
    resource_id: str,
    data: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    """Add an event to the session's unit of work; it commits (or rolls back) with
    the change it describes."""
    buffer: list[dict[str, Any]] = session.info.setdefault(_BUFFER, [])
    buffer.append(
        {
            "type": type,
            "resource_type": resource_type,
            "resource_id": str(resource_id),
            "data": data or {},
            "actor": actor,
            "created_at": utcnow(),
        }
    )


async def flush_events(session: AsyncSession) -> None:
    """Write the buffered events now (they are otherwise written at commit)."""
    rows = session.info.pop(_BUFFER, None)
    if rows:
        await (await session.connection()).execute(_INSERT, rows)
        _mark(session.info, rows)


@sa_event.listens_for(Session, "before_commit")
def _write_buffered_events(session: Session) -> None:
    rows = session.info.pop(_BUFFER, None)
    if rows:
        session.connection().execute(_INSERT, rows)
        _mark(session.info, rows)


def _mark(info: dict[Any, Any], rows: list[dict[str, Any]]) -> None:
    info[OUTBOX_FLAG] = True
    info.setdefault(EVENT_TYPES, set()).update(r["type"] for r in rows)


@sa_event.listens_for(Session, "after_rollback")
def _drop_buffered_events(session: Session) -> None:
    session.info.pop(_BUFFER, None)


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_buffered_events_soft(session: Session, _previous: Any) -> None:
    session.info.pop(_BUFFER, None)

"""Record events inside the caller's unit of work (the transactional outbox)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.db.database import OUTBOX_FLAG
from ymera.kit.clock import utcnow
from ymera.models.events import Event


def record_event(
    session: AsyncSession,
    *,
    type: str,
    resource_type: str,
    resource_id: str,
    data: dict[str, Any] | None = None,
    actor: str | None = None,
) -> Event:
    """Add an event row to the session; it commits (or rolls back) with the change.

    After commit the relay assigns its sequence number and publishes it on the
    bus; a rollback drops it and nothing is published.
    """
    event = Event(
        type=type,
        resource_type=resource_type,
        resource_id=str(resource_id),
        data=data or {},
        actor=actor,
        created_at=utcnow(),
    )
    session.add(event)
    session.info[OUTBOX_FLAG] = True
    return event

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ymera.db.base import Base, BigIntPK, JSONType


class Event(Base):
    """One state change, written in the same transaction as the change (the outbox).

    ``seq`` is its place in the stream, taken as its transaction commits, under
    the sequencer's row lock (``events.outbox``): gap-free and in commit order,
    so readers that resume from a ``seq`` never skip an event that committed
    late. It is the primary key (on SQLite the rowid itself).
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_resource", "resource_type", "resource_id", "seq"),
        Index("ix_events_type_seq", "type", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(50))
    resource_id: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str | None] = mapped_column(String(100), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column()


class EventSequencer(Base):
    """A single row holding the last assigned ``seq``; its row lock serialises relays."""

    __tablename__ = "event_sequencer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ymera.db.base import Base, BigIntPK, JSONType


class Event(Base):
    """One state change, written in the same transaction as the change (the outbox).

    ``id`` is allocated at insert time and can commit out of order across
    concurrent transactions; ``seq`` is assigned afterwards by the relay, in
    commit order, under a lock, so readers that resume from a ``seq`` never
    skip an event that committed late.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_seq", "seq", unique=True),
        Index("ix_events_resource", "resource_type", "resource_id", "seq"),
        Index("ix_events_type_seq", "type", "seq"),
        Index(
            "ix_events_unsequenced",
            "id",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, default=None)
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

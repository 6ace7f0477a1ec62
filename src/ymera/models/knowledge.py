"""The knowledge base: experiences (a task type, what was asked, the outcome,
the agent, notes), recorded from finished tasks or added by people and agents.

``seq`` is the integer key (SQLite's rowid alias, so the external-content FTS5
index keeps pointing at the right rows across a VACUUM); ``id`` is the public
one. The text index is not mapped: per dialect, the migration creates an FTS5
table kept in sync by triggers (SQLite) or a generated ``tsvector`` column with
a GIN index (PostgreSQL); see ``ymera.knowledge.repository``. No foreign keys
to tasks or agents: an experience outlives both, and recording one must never
fail the task engine's transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ymera.db.base import Base, BigIntPK


class Experience(Base):
    __tablename__ = "knowledge"
    # No index on task_id: no query looks an experience up by its task (the
    # similar-tasks query only leaves the asking task out), and every finished
    # task's experience paid for one (migration 0023).
    __table_args__ = (Index("ix_knowledge_task_type_seq", "task_type", "seq"),)

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    task_type: Mapped[str] = mapped_column(String(100))
    summary: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    notes: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(10))  # task | user | agent
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime]
    # float32 little-endian vector (the semantic extra); null: not embedded (yet).
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)

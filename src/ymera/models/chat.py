"""Chat: sessions, their participants and messages, the agent requests in flight,
and the links between files and what they are attached to.

A session's messages are numbered by ``seq`` (1, 2, 3, ... per session, no gaps):
``chat_sessions.last_seq`` is the counter, incremented in the transaction that
adds the message, so its row lock orders the writers and a rollback gives the
number back. Participants are ``user:<id>`` or ``agent:<id>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ymera.db.base import Base, JSONType


class ChatSession(Base):
    __tablename__ = "chat_sessions"
    __table_args__ = (Index("ix_chat_sessions_created", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))  # active | archived
    created_by: Mapped[str] = mapped_column(String(80))
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    archived_at: Mapped[datetime | None] = mapped_column(default=None)


class ChatParticipant(Base):
    __tablename__ = "chat_participants"
    __table_args__ = (Index("ix_chat_participants_participant", "participant_id", "session_id"),)

    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    participant_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # user | agent
    name: Mapped[str] = mapped_column(String(200))
    added_at: Mapped[datetime] = mapped_column()


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        Index("uq_chat_messages_session_seq", "session_id", "seq", unique=True),
        Index("ix_chat_messages_task_id", "task_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    sender_id: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(20))  # message | agent_reply | agent_error
    content: Mapped[str] = mapped_column(Text)
    file_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    addressed_to: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    task_id: Mapped[str | None] = mapped_column(String(36), default=None)
    reply_to: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime] = mapped_column()


class ChatTask(Base):
    """A ``chat`` task asked of an agent by a message; ``done`` once its reply is in."""

    __tablename__ = "chat_tasks"
    __table_args__ = (Index("ix_chat_tasks_session_done", "session_id", "done"),)

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(36))
    done: Mapped[bool] = mapped_column(Boolean, default=False)


class FileLink(Base):
    """A file attached to something (a task, a chat message, a workspace)."""

    __tablename__ = "file_links"
    __table_args__ = (Index("ix_file_links_resource", "resource_type", "resource_id"),)

    file_id: Mapped[str] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    resource_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column()

"""Code editor tables: workspaces, edit sessions, edits and the files each edit touched.

A workspace's files live on disk (``<data_dir>/workspaces/<id>/files``); these
tables hold what happened to them. ``edit_files`` keeps, for every file an edit
touched, its content before and after (``None``: the file did not exist on that
side), so an edit can be applied later (a proposal), reverted, undone or exported
as a diff without the files' history on disk.

Two per-workspace counters, taken under the workspace's row lock, number its
edits (``workspaces.edit_count`` -> ``edits.number``) and order their writes to
disk (``workspaces.apply_seq`` -> ``edits.applied_seq``), which undo and session
export rely on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ymera.db.base import Base, IdMixin, JSONType, TimestampMixin


class Workspace(IdMixin, TimestampMixin, Base):
    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(10))  # empty | archive | git
    is_git: Mapped[bool] = mapped_column(Boolean, default=False)
    git_origin: Mapped[str | None] = mapped_column(Text, default=None)
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    created_by: Mapped[str] = mapped_column(String(80))  # principal id (user:..., key:...)
    edit_count: Mapped[int] = mapped_column(Integer, default=0)  # numbers edits
    apply_seq: Mapped[int] = mapped_column(Integer, default=0)  # orders their application


class EditSession(IdMixin, TimestampMixin, Base):
    __tablename__ = "edit_sessions"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default="OPEN")  # OPEN | CLOSED
    created_by_type: Mapped[str] = mapped_column(String(10))  # user | agent
    created_by_id: Mapped[str] = mapped_column(String(36))
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    # The task whose agent's edits this session groups (one session per task). No
    # foreign key: tasks are never deleted, and a key would lock the task's row
    # for as long as the edit's transaction runs (analysis included).
    task_id: Mapped[str | None] = mapped_column(String(36), default=None, unique=True, index=True)


class Edit(IdMixin, TimestampMixin, Base):
    __tablename__ = "edits"
    __table_args__ = (
        UniqueConstraint("workspace_id", "number"),
        Index("ix_edits_workspace_status", "workspace_id", "status"),
    )

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("edit_sessions.id", ondelete="SET NULL"), default=None, index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(Integer, default=5)
    title: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(12))  # operation | patch | bulk | undo | revert
    operation: Mapped[str | None] = mapped_column(String(20), default=None)
    status: Mapped[str] = mapped_column(String(10))
    author_type: Mapped[str] = mapped_column(String(10))  # user | agent
    author_id: Mapped[str] = mapped_column(String(36))
    author_name: Mapped[str] = mapped_column(String(100), default="")
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    diff: Mapped[str] = mapped_column(Text, default="")
    analysis: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    rebased: Mapped[bool] = mapped_column(Boolean, default=False)
    reverts_edit_id: Mapped[str | None] = mapped_column(String(36), default=None)
    reverted_by_edit_id: Mapped[str | None] = mapped_column(String(36), default=None)
    applied_seq: Mapped[int | None] = mapped_column(Integer, default=None)
    applied_at: Mapped[datetime | None] = mapped_column(default=None)
    applied_by: Mapped[str | None] = mapped_column(String(80), default=None)
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None)
    reviewed_by: Mapped[str | None] = mapped_column(String(80), default=None)
    review_comment: Mapped[str] = mapped_column(Text, default="")
    commit_sha: Mapped[str | None] = mapped_column(String(64), default=None)


class EditFile(Base):
    """One file an edit touched: hashes and full contents before and after."""

    __tablename__ = "edit_files"

    edit_id: Mapped[str] = mapped_column(
        ForeignKey("edits.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    base_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    result_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    before: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    after: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)

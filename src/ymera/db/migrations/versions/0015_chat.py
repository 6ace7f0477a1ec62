"""chat: sessions, participants, messages numbered per session, the agent
requests in flight (chat_tasks), and file_links (what a file is attached to)

Revision ID: 0015
Revises: 0010
Create Date: 2026-12-06 12:17:35.830448
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ymera.db.base

revision: str = "0015"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("archived_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_sessions")),
    )
    with op.batch_alter_table("chat_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_chat_sessions_created", ["created_at", "id"], unique=False)

    op.create_table(
        "chat_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(
            "file_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "addressed_to",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("reply_to", sa.String(length=36), nullable=True),
        sa.Column("created_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chat_sessions.id"],
            name=op.f("fk_chat_messages_session_id_chat_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
    )
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.create_index("ix_chat_messages_task_id", ["task_id"], unique=False)
        batch_op.create_index("uq_chat_messages_session_seq", ["session_id", "seq"], unique=True)

    op.create_table(
        "chat_participants",
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("participant_id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("added_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chat_sessions.id"],
            name=op.f("fk_chat_participants_session_id_chat_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "participant_id", name=op.f("pk_chat_participants")),
    )
    with op.batch_alter_table("chat_participants", schema=None) as batch_op:
        batch_op.create_index(
            "ix_chat_participants_participant", ["participant_id", "session_id"], unique=False
        )

    op.create_table(
        "chat_tasks",
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chat_sessions.id"],
            name=op.f("fk_chat_tasks_session_id_chat_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_chat_tasks")),
    )
    with op.batch_alter_table("chat_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_chat_tasks_session_done", ["session_id", "done"], unique=False)

    op.create_table(
        "file_links",
        sa.Column("file_id", sa.String(length=36), nullable=False),
        sa.Column("resource_type", sa.String(length=20), nullable=False),
        sa.Column("resource_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"], ["files.id"], name=op.f("fk_file_links_file_id_files"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "file_id", "resource_type", "resource_id", name=op.f("pk_file_links")
        ),
    )
    with op.batch_alter_table("file_links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_file_links_resource", ["resource_type", "resource_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("file_links", schema=None) as batch_op:
        batch_op.drop_index("ix_file_links_resource")

    op.drop_table("file_links")
    with op.batch_alter_table("chat_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_tasks_session_done")

    op.drop_table("chat_tasks")
    with op.batch_alter_table("chat_participants", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_participants_participant")

    op.drop_table("chat_participants")
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_index("uq_chat_messages_session_seq")
        batch_op.drop_index("ix_chat_messages_task_id")

    op.drop_table("chat_messages")
    with op.batch_alter_table("chat_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_sessions_created")

    op.drop_table("chat_sessions")

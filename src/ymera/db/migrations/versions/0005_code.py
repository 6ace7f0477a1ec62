"""code editor: workspaces, edit sessions, edits and their files

Workspaces (a directory tree under the data dir, optionally a git repository),
edit sessions grouping edits, edits (typed, prioritised, reviewed records with
their diff and analysis) and, per edit, every touched file's hashes and content
before and after.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 04:09:26.246380
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ymera.db.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("is_git", sa.Boolean(), nullable=False),
        sa.Column("git_origin", sa.Text(), nullable=True),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("edit_count", sa.Integer(), nullable=False),
        sa.Column("apply_seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_workspaces_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
    )
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workspaces_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "edit_sessions",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_by_type", sa.String(length=10), nullable=False),
        sa.Column("created_by_id", sa.String(length=36), nullable=False),
        sa.Column("closed_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_edit_sessions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edit_sessions")),
    )
    with op.batch_alter_table("edit_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_edit_sessions_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "edits",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=12), nullable=False),
        sa.Column("operation", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("author_type", sa.String(length=10), nullable=False),
        sa.Column("author_id", sa.String(length=36), nullable=False),
        sa.Column("author_name", sa.String(length=100), nullable=False),
        sa.Column(
            "files",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column(
            "analysis",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("rebased", sa.Boolean(), nullable=False),
        sa.Column("reverts_edit_id", sa.String(length=36), nullable=True),
        sa.Column("reverted_by_edit_id", sa.String(length=36), nullable=True),
        sa.Column("applied_seq", sa.Integer(), nullable=True),
        sa.Column("applied_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("applied_by", sa.String(length=80), nullable=True),
        sa.Column("reviewed_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.String(length=80), nullable=True),
        sa.Column("review_comment", sa.Text(), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["edit_sessions.id"],
            name=op.f("fk_edits_session_id_edit_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_edits_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edits")),
        sa.UniqueConstraint("workspace_id", "number", name=op.f("uq_edits_workspace_id")),
    )
    with op.batch_alter_table("edits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_edits_session_id"), ["session_id"], unique=False)
        batch_op.create_index("ix_edits_workspace_status", ["workspace_id", "status"], unique=False)

    op.create_table(
        "edit_files",
        sa.Column("edit_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("base_hash", sa.String(length=64), nullable=True),
        sa.Column("result_hash", sa.String(length=64), nullable=True),
        sa.Column("before", sa.LargeBinary(), nullable=True),
        sa.Column("after", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["edit_id"], ["edits.id"], name=op.f("fk_edit_files_edit_id_edits"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("edit_id", "position", name=op.f("pk_edit_files")),
    )


def downgrade() -> None:
    op.drop_table("edit_files")
    with op.batch_alter_table("edits", schema=None) as batch_op:
        batch_op.drop_index("ix_edits_workspace_status")
        batch_op.drop_index(batch_op.f("ix_edits_session_id"))

    op.drop_table("edits")
    with op.batch_alter_table("edit_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_edit_sessions_workspace_id"))

    op.drop_table("edit_sessions")
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workspaces_owner_id"))

    op.drop_table("workspaces")

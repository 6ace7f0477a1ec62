"""tasks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 22:53:56.801931
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ymera.db.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column(
            "input",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "required_capabilities",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "file_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "preferred_agents",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "excluded_agents",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_initial", sa.Float(), nullable=False),
        sa.Column("retry_factor", sa.Float(), nullable=False),
        sa.Column("retry_cap", sa.Float(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=True),
        sa.Column("deadline", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("available_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("lease_expires_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "idempotency_expires_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("workflow_step_id", sa.String(length=36), nullable=True),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "error",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "routing",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("progress_message", sa.String(length=500), nullable=True),
        sa.Column("feedback_score", sa.Float(), nullable=True),
        sa.Column("feedback_comment", sa.String(length=2000), nullable=True),
        sa.Column("created_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_tasks_agent_id_agents"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("created_by", "idempotency_key", name="uq_tasks_idempotency"),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_agent_status", ["agent_id", "status"], unique=False)
        batch_op.create_index(
            "ix_tasks_lease",
            ["lease_expires_at"],
            unique=False,
            postgresql_where=sa.text("status IN ('ASSIGNED', 'RUNNING')"),
            sqlite_where=sa.text("status IN ('ASSIGNED', 'RUNNING')"),
        )
        batch_op.create_index(
            "ix_tasks_queue",
            ["priority", "created_at"],
            unique=False,
            postgresql_where=sa.text("status = 'PENDING'"),
            sqlite_where=sa.text("status = 'PENDING'"),
        )
        batch_op.create_index("ix_tasks_status_created", ["status", "created_at"], unique=False)
        batch_op.create_index("ix_tasks_type_created", ["type", "created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_tasks_workflow_step_id"), ["workflow_step_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_workflow_step_id"))
        batch_op.drop_index("ix_tasks_type_created")
        batch_op.drop_index("ix_tasks_status_created")
        batch_op.drop_index(
            "ix_tasks_queue",
            postgresql_where=sa.text("status = 'PENDING'"),
            sqlite_where=sa.text("status = 'PENDING'"),
        )
        batch_op.drop_index(
            "ix_tasks_lease",
            postgresql_where=sa.text("status IN ('ASSIGNED', 'RUNNING')"),
            sqlite_where=sa.text("status IN ('ASSIGNED', 'RUNNING')"),
        )
        batch_op.drop_index("ix_tasks_agent_status")

    op.drop_table("tasks")

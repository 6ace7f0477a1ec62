"""agents registry

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 22:35:35.858290
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ymera.db.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "capabilities",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("connection_mode", sa.String(length=10), nullable=False),
        sa.Column("endpoint_url", sa.String(length=2048), nullable=True),
        sa.Column("learning_mode", sa.String(length=20), nullable=True),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.Column("status_changed_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("current_load", sa.Integer(), nullable=False),
        sa.Column("last_heartbeat_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("connected_replica", sa.String(length=64), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_agents_owner_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("name", name=op.f("uq_agents_name")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agents_last_heartbeat_at"), ["last_heartbeat_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_agents_status"), ["status"], unique=False)
        batch_op.create_index("ix_agents_type_status", ["type", "status"], unique=False)

    op.create_table(
        "agent_capabilities",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("proficiency", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_capabilities_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", "name", name=op.f("pk_agent_capabilities")),
    )
    with op.batch_alter_table("agent_capabilities", schema=None) as batch_op:
        batch_op.create_index("ix_agent_capabilities_name", ["name", "proficiency"], unique=False)

    op.create_table(
        "agent_tags",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_tags_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", "tag", name=op.f("pk_agent_tags")),
    )
    with op.batch_alter_table("agent_tags", schema=None) as batch_op:
        batch_op.create_index("ix_agent_tags_tag", ["tag"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agent_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_tags_tag")

    op.drop_table("agent_tags")
    with op.batch_alter_table("agent_capabilities", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_capabilities_name")

    op.drop_table("agent_capabilities")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index("ix_agents_type_status")
        batch_op.drop_index(batch_op.f("ix_agents_status"))
        batch_op.drop_index(batch_op.f("ix_agents_last_heartbeat_at"))

    op.drop_table("agents")

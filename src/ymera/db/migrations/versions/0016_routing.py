"""routing: policies (global and per task type) and the learning engine's stats

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ymera.db.base

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "routing_policies",
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("strategy", sa.String(length=40), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("params", ymera.db.base.JSONType, nullable=False),
        sa.Column("updated_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_routing_policies")),
    )
    op.create_table(
        "learning_stats",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("era", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        *(
            sa.Column(name, sa.Float(), nullable=False)
            for name in ("s", "f", "ln_n", "ln_sum", "ln_sq", "fb_n", "fb_sum")
        ),
        sa.Column("updated_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "task_type", name=op.f("pk_learning_stats")),
    )


def downgrade() -> None:
    op.drop_table("learning_stats")
    op.drop_table("routing_policies")

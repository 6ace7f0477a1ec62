"""agent metrics and health checks

Per-agent minute/hour metric buckets (counters and a 49-bucket latency
histogram) and the active health-check / outlier-ejection state of http and
a2a agents.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 23:03:27.792453
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ymera.db.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _histogram() -> list[sa.Column[int]]:
    """Latency histogram counters h00..h48 (see ymera.models.agent_metrics)."""
    return [sa.Column(f"h{i:02d}", sa.Integer(), nullable=False) for i in range(49)]


def upgrade() -> None:
    op.create_table(
        "agent_metric_buckets",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("bucket_start", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("quality_sum", sa.Float(), nullable=False),
        sa.Column("quality_count", sa.Integer(), nullable=False),
        *_histogram(),
        sa.PrimaryKeyConstraint(
            "agent_id", "period", "bucket_start", "task_type", name=op.f("pk_agent_metric_buckets")
        ),
    )
    with op.batch_alter_table("agent_metric_buckets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_agent_metric_buckets_period_start", ["period", "bucket_start"], unique=False
        )

    op.create_table(
        "agent_health",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("times_ejected", sa.Integer(), nullable=False),
        sa.Column("ejected_until", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("probing", sa.Boolean(), nullable=False),
        sa.Column("healthy_since", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_probe_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_probe_at", ymera.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_probe_ok", sa.Boolean(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_latency_seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_health_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", name=op.f("pk_agent_health")),
    )
    with op.batch_alter_table("agent_health", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_health_next_probe_at"), ["next_probe_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("agent_health", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_health_next_probe_at"))

    op.drop_table("agent_health")
    with op.batch_alter_table("agent_metric_buckets", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_metric_buckets_period_start")

    op.drop_table("agent_metric_buckets")

"""task_routing: routing explanations in a table of their own, one per assignment

The explanation of a routing decision is larger than the rest of a task, and a
task's row is rewritten at every change of its state; kept on the row, it made
every one of those writes (and the pages they touch) twice as big. Existing
explanations move over (as the task's current attempt); ``tasks.routing`` goes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ymera.db.base

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_routing",
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("decided_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decision", ymera.db.base.JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_routing_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "attempt", name=op.f("pk_task_routing")),
    )
    op.execute(
        "INSERT INTO task_routing (task_id, attempt, decided_at, decision) "
        "SELECT id, attempt, COALESCE(assigned_at, updated_at), routing FROM tasks "
        "WHERE routing IS NOT NULL AND attempt > 0"
    )
    # SQLite drops a plain column in place (3.35+); no table copy.
    op.execute("ALTER TABLE tasks DROP COLUMN routing")


def downgrade() -> None:
    op.add_column("tasks", sa.Column("routing", ymera.db.base.JSONType, nullable=True))
    op.execute(
        "UPDATE tasks SET routing = (SELECT r.decision FROM task_routing r "
        "WHERE r.task_id = tasks.id ORDER BY r.attempt DESC LIMIT 1)"
    )
    op.drop_table("task_routing")

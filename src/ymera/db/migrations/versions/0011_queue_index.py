"""tasks: the queue index in claim order (priority descending, then age, then id)

The dispatcher reads the head of the queue ``ORDER BY priority DESC,
created_at, id``; the old index ``(priority, created_at)`` could not serve that
order, so every claim sorted every pending task.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-06 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("status = 'PENDING'")


def upgrade() -> None:
    op.drop_index("ix_tasks_queue", table_name="tasks")
    op.create_index(
        "ix_tasks_queue",
        "tasks",
        [sa.text("priority DESC"), "created_at", "id"],
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_queue", table_name="tasks")
    op.create_index(
        "ix_tasks_queue",
        "tasks",
        ["priority", "created_at"],
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )

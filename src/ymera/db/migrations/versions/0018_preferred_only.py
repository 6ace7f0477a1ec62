"""tasks: preferred_only, a strict routing hint (only the preferred agents may
take the task; it waits for one of them rather than going to another agent)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both databases: batch mode would copy the tasks table on
# SQLite and lose the queue index's DESC order on the copy.


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("preferred_only", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("tasks", "preferred_only")

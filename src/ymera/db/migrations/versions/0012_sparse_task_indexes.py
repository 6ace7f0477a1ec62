"""tasks: the workflow-step and workspace indexes hold only the tasks that have one

Most tasks belong to no workflow and carry no workspace; partial indexes
(``IS NOT NULL``) leave them out, which saves two index writes per task row
written (on PostgreSQL per row version: an update that changes an indexed
column writes every index).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = {
    "ix_tasks_workflow_step_id": "workflow_step_id",
    "ix_tasks_workspace_id": "workspace_id",
}


def upgrade() -> None:
    for name, column in _COLUMNS.items():
        op.drop_index(name, table_name="tasks")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "tasks", [column], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, column in _COLUMNS.items():
        op.drop_index(name, table_name="tasks")
        op.create_index(name, "tasks", [column])

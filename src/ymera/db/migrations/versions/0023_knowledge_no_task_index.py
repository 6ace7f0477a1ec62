"""knowledge: no index on task_id

No query looks an experience up by its task: the similar-tasks query only
leaves the asking task out (``task_id != ...``, which an index does not serve).
Every finished task's recorded experience still paid for an entry in it: in
psql, 10,000 of the dispatch benchmark's experiences inserted in 64-70 ms with
it and 52-57 ms without (about 1.1 us a task, of the ~6.5 the row costs).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 22:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_knowledge_task_id", table_name="knowledge")


def downgrade() -> None:
    op.create_index("ix_knowledge_task_id", "knowledge", ["task_id"])

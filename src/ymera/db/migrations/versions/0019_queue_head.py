"""tasks: the head of the queue read by a PostgreSQL function whose plan cannot
depend on the table's statistics

The claim reads the head of the queue in the order of ``ix_tasks_queue``. When
the statistics say few tasks are PENDING (true of a healthy queue: most rows
are finished) and a burst arrives, the planner would rather fetch every pending
row through ``ix_tasks_status_created`` and sort them all, so each claim costs
time in proportion to the depth of the queue (measured: 13-27 ms per claim at
10,000 queued against 0.3 ms). The function plans its query with sorting and
bitmap scans off: the only plan left is the ordered walk of the queue index.
SQLite names the index in the query instead (``INDEXED BY``): nothing to do.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 18:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION ymera_queue_head(p_now timestamptz, p_limit integer, p_offset integer)
        RETURNS SETOF tasks
        LANGUAGE plpgsql
        SET enable_sort = off
        SET enable_bitmapscan = off
        AS $$
        BEGIN
            RETURN QUERY
                SELECT * FROM tasks
                WHERE status = 'PENDING' AND available_at <= p_now
                ORDER BY priority DESC, created_at, id
                LIMIT p_limit OFFSET p_offset
                FOR UPDATE SKIP LOCKED;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION ymera_queue_head(timestamptz, integer, integer)")

"""The claim reads the head of the queue through ix_tasks_queue whatever the
table's statistics say. On PostgreSQL, statistics taken while few tasks waited
(a healthy queue: most rows finished) make the planner fetch every pending row
through another index and sort them when a burst arrives, so each claim would
cost time in proportion to the depth of the queue; the claim goes through
``ymera_queue_head`` (migration 0019), which cannot choose that plan."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import AppHarness
from ymera.db import driver
from ymera.kit.clock import utcnow
from ymera.tasks import repository

_INSERT = """
INSERT INTO tasks (id, type, status, priority, input, required_capabilities, file_ids,
  preferred_agents, excluded_agents, preferred_only, max_attempts, attempt, retry_initial,
  retry_factor, retry_cap, available_at, created_by, created_at, updated_at)
SELECT :prefix || lpad(g::text, 6, '0'), 'noop', :status, g % 10, '{"i": 1}', '[]', '[]',
  '[]', '[]', false, 3, 0, 1, 2, 60, now() - interval '1 hour', 'u',
  now() - interval '1 hour' + g * interval '1 ms', now()
FROM generate_series(1, :count) AS g
"""

_PLAIN_CLAIM = """
EXPLAIN SELECT id FROM tasks WHERE status = 'PENDING' AND available_at <= now()
ORDER BY priority DESC, created_at, id LIMIT 100 FOR UPDATE SKIP LOCKED
"""

_SCANS = """
SELECT relname, pg_stat_get_xact_numscans(oid) FROM pg_class
WHERE relname IN ('ix_tasks_queue', 'ix_tasks_status_created')
"""


@pytest.mark.parametrize("backend", ["postgresql-redis"], indirect=True)
async def test_the_claim_walks_the_queue_index_with_stale_statistics(
    harness: AppHarness,
) -> None:
    db = harness.state.db
    async with db.transaction() as session:
        await session.execute(
            text(_INSERT), {"prefix": "done-", "status": "SUCCEEDED", "count": 5000}
        )
    async with db.transaction() as session:
        await session.execute(text("ANALYZE tasks"))  # statistics: nothing waits
    async with db.transaction() as session:
        await session.execute(
            text(_INSERT), {"prefix": "wait-", "status": "PENDING", "count": 5000}
        )

    async with db.transaction() as session:
        # The trap: the plain query, planned with these statistics, does not walk
        # the queue index (it reads every pending task and sorts them).
        plan = "\n".join(r[0] for r in (await session.execute(text(_PLAIN_CLAIM))).all())
        assert "ix_tasks_queue" not in plan, plan
        assert "Sort" in plan, plan

    async with db.transaction() as session:
        # Counted before and after, in one transaction: the counters also hold
        # what this pooled backend's earlier transactions scanned in the last
        # second (PostgreSQL 15 flushes a backend's statistics at most once a
        # second; the app's own loops read the queue on these connections).
        before = dict((await session.execute(text(_SCANS))).all())
        rows = await repository.pending_window(session, now=utcnow(), limit=100)
        after = dict((await session.execute(text(_SCANS))).all())
    scans = {name: after[name] - before[name] for name in after}
    assert scans["ix_tasks_queue"] >= 1
    assert scans["ix_tasks_status_created"] == 0
    # The head in claim order: highest priority first, then oldest.
    assert [r.priority for r in rows] == [9] * 100
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert rows[0].id == "wait-000009"

    # Locked rows are skipped by a concurrent claim, and the offset pages on.
    async with db.transaction() as first, db.transaction() as second:
        head = await repository.pending_window(first, now=utcnow(), limit=10)
        other = await repository.pending_window(second, now=utcnow(), limit=10)
        assert not {r.id for r in head} & {r.id for r in other}
    async with db.transaction() as session:
        later = await repository.pending_window(
            session, now=utcnow() - timedelta(hours=2), limit=10
        )
        assert later == []  # nothing available yet at that instant
        paged = await repository.pending_window(session, now=utcnow(), limit=5, offset=5)
        assert [r.id for r in paged] == [r.id for r in rows[5:10]]


_MANY = """
INSERT INTO tasks (id, type, status, priority, input, required_capabilities, file_ids,
  preferred_agents, excluded_agents, preferred_only, max_attempts, attempt, retry_initial,
  retry_factor, retry_cap, available_at, created_by, created_at, updated_at)
SELECT md5(g::text), 'noop', 'SUCCEEDED', 5, '{"i": 1}', '[]', '[]', '[]',
  '[]', false, 3, 1, 1, 2, 60, now(), 'u', now(), now()
FROM generate_series(1, 8000) AS g
"""


@pytest.mark.parametrize("backend", ["postgresql-redis"], indirect=True)
async def test_group_commits_look_tasks_up_by_key(harness: AppHarness) -> None:
    """A report batch's tasks are locked and updated by primary key: with the
    default cost of a random page the planner would rather read a table of
    8,000 tasks whole than look up 500 keys (up to some 15,000), so the writer's transactions rule
    out sequential scans (``SET LOCAL enable_seqscan = off``)."""
    db = harness.state.db
    async with db.transaction() as session:
        await session.execute(text(_MANY))
    async with db.transaction() as session:
        await session.execute(text("ANALYZE tasks"))
    keys = [hashlib.md5(str(i).encode()).hexdigest() for i in range(1, 8001, 16)]  # 500
    sql, params = driver.select_by_keys(
        "postgresql", "tasks", repository._ROW_FIELDS, keys, lock=True
    )
    explain = "EXPLAIN " + driver.render(sql, "postgresql")
    async with db.transaction() as session:
        conn = await session.connection()
        raw = (await conn.get_raw_connection()).dbapi_connection._connection
        plain = "\n".join(r[0] for r in await raw.fetch(explain, *params))
        assert "Seq Scan on tasks" in plain, plain  # the trap

    seen: list[str] = []

    async def op(session: Any) -> None:
        conn = await session.connection()
        seen.append((await conn.exec_driver_sql("SHOW enable_seqscan")).scalar_one())
        raw = (await conn.get_raw_connection()).dbapi_connection._connection
        seen.append("\n".join(r[0] for r in await raw.fetch(explain, *params)))

    writer = harness.state.extras["writer"]
    await writer.submit(op, task_id=keys[0])
    assert seen[0] == "off"
    assert "Seq Scan on tasks" not in seen[1]
    assert "pk_tasks" in seen[1]

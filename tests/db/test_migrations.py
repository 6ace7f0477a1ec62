"""Alembic migrations on an empty database, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

import ymera.models  # noqa: F401  (registers every table)
from ymera.db import migrate
from ymera.db.base import Base
from ymera.db.database import Database
from ymera.tasks import repository as tasks_repository

MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture
async def empty_db(empty_database_url: str) -> AsyncIterator[Database]:
    """A Database on a brand-new, empty database of the backend's kind."""
    db = Database(empty_database_url)
    try:
        yield db
    finally:
        await db.dispose()


async def _tables(db: Database) -> set[str]:
    def _names(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names())

    async with db.engine.connect() as conn:
        return await conn.run_sync(_names)


# Indexes over expressions (a DESC column) that alembic cannot compare; each is
# checked by its own test (test_queue_index_serves_the_claim_order).
EXPRESSION_INDEXES = {"ix_tasks_queue"}


def _comparable(obj: Any, name: str | None, type_: str, reflected: bool, other: Any) -> bool:
    if type_ == "index" and name in EXPRESSION_INDEXES:
        return False
    return migrate.include_object(obj, name, type_, reflected, other)


async def _schema_diff(db: Database) -> list[Any]:
    """What alembic autogenerate would change to make the database match the models."""

    def _compare(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_object": _comparable,
            },
        )
        return list(compare_metadata(ctx, Base.metadata))

    async with db.engine.connect() as conn:
        return await conn.run_sync(_compare)


def _newest_script() -> Any:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    head = script.get_current_head()
    assert head is not None
    return script.get_revision(head)


async def test_upgrade_from_empty_creates_every_table_and_matches_models(
    empty_db: Database,
) -> None:
    assert await _tables(empty_db) == set()
    assert await migrate.current_revision(empty_db) is None
    assert await migrate.is_at_head(empty_db) is False

    await migrate.upgrade(empty_db)

    assert await migrate.is_at_head(empty_db) is True
    assert await migrate.current_revision(empty_db) == migrate.head_revision()
    tables = {t for t in await _tables(empty_db) if not migrate.is_text_index_table(t)}
    assert tables == MODEL_TABLES | {"alembic_version"}
    assert await _schema_diff(empty_db) == []
    # The sequencer row the relay locks is seeded by the migration.
    async with empty_db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, last_seq FROM event_sequencer"))).all()
    assert [tuple(r) for r in rows] == [(1, 0)]


async def test_upgrade_twice_is_a_no_op(empty_db: Database) -> None:
    """`ymera serve` migrates on every start; a second run must change nothing."""
    await migrate.upgrade(empty_db)
    await migrate.upgrade(empty_db)
    assert await migrate.is_at_head(empty_db) is True
    async with empty_db.engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM event_sequencer"))).scalar_one()
    assert count == 1


async def test_downgrade_newest_then_upgrade_again(empty_db: Database) -> None:
    newest = _newest_script()
    await migrate.upgrade(empty_db)

    await migrate.downgrade(empty_db, "-1")

    assert await migrate.current_revision(empty_db) == newest.down_revision
    assert await migrate.is_at_head(empty_db) is False
    if newest.down_revision is None:
        assert await _tables(empty_db) <= {"alembic_version"}

    await migrate.upgrade(empty_db)

    assert await migrate.is_at_head(empty_db) is True
    tables = {t for t in await _tables(empty_db) if not migrate.is_text_index_table(t)}
    assert tables == MODEL_TABLES | {"alembic_version"}
    assert await _schema_diff(empty_db) == []


async def test_apps_in_one_process_migrating_at_once_do_not_collide(
    empty_database_url: str,
) -> None:
    """Alembic's `op`/`context` are module globals: migrations started side by side in
    one process (several apps in a test, say) must take turns. (Separate processes
    are serialised by the database; see tests/system/test_serve.py.)"""
    dbs = [Database(empty_database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate.upgrade(db) for db in dbs))
        assert all([await migrate.is_at_head(db) for db in dbs])
        tables = {t for t in await _tables(dbs[0]) if not migrate.is_text_index_table(t)}
        assert tables == MODEL_TABLES | {"alembic_version"}
        async with dbs[0].engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM event_sequencer"))).scalar_one()
        assert count == 1
    finally:
        for db in dbs:
            await db.dispose()


async def test_queue_index_serves_the_claim_order(empty_db: Database) -> None:
    """The claim's read of the queue head (the repository's own statement) walks
    ``ix_tasks_queue`` in claim order (priority descending, then age, then id)
    instead of sorting every pending task."""
    await migrate.upgrade(empty_db)
    now = datetime.now(UTC)
    async with empty_db.engine.connect() as conn:
        if empty_db.dialect == "sqlite":
            sql = str(tasks_repository._PENDING_WINDOW_SQLITE)
            params = {"now": now.isoformat(sep=" "), "limit": 10, "offset": 0}
            rows = await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"), params)
            plan = " ".join(str(row[-1]) for row in rows)
            assert "ix_tasks_queue" in plan
            assert "TEMP B-TREE" not in plan
    if empty_db.dialect != "sqlite":  # through ymera_queue_head (0019): no sort possible
        async with empty_db.engine.begin() as conn:
            head = text("SELECT id FROM ymera_queue_head(:now, 10, 0)")
            scans = text(
                "SELECT relname, pg_stat_get_xact_numscans(oid) FROM pg_class "
                "WHERE relname IN ('ix_tasks_queue', 'ix_tasks_status_created')"
            )
            # Before and after: the counters also hold the last second's scans of
            # this backend's earlier transactions (not yet flushed).
            before = dict((await conn.execute(scans)).all())
            assert (await conn.execute(head, {"now": now})).all() == []
            after = dict((await conn.execute(scans)).all())
        counts = {name: after[name] - before[name] for name in after}
        assert counts == {"ix_tasks_queue": 1, "ix_tasks_status_created": 0}


async def test_events_keep_their_seq_and_unnumbered_ones_are_numbered(empty_db: Database) -> None:
    """0014 makes seq the key: numbered events keep theirs; events an older version
    left without one are numbered after the last, in id order; the sequencer
    follows."""
    await migrate.upgrade(empty_db, "0013")
    async with empty_db.engine.begin() as conn:
        insert = text(
            "INSERT INTO events (id, seq, type, resource_type, resource_id, data, created_at) "
            "VALUES (:id, :seq, 'e', 'r', :rid, '{}', '2026-01-01 00:00:00')"
        )
        for id_, seq in ((1, 1), (2, 2), (4, None), (3, None)):
            await conn.execute(insert, {"id": id_, "seq": seq, "rid": str(id_)})
        await conn.execute(text("UPDATE event_sequencer SET last_seq = 2"))
    await migrate.upgrade(empty_db)
    async with empty_db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT seq, resource_id FROM events ORDER BY seq"))).all()
        last = (await conn.execute(text("SELECT last_seq FROM event_sequencer"))).scalar_one()
    assert [tuple(r) for r in rows] == [(1, "1"), (2, "2"), (3, "3"), (4, "4")]
    assert last == 4


_TASK_SQL = text(
    "INSERT INTO tasks (id, type, status, priority, input, required_capabilities, file_ids,"
    " preferred_agents, excluded_agents, preferred_only, max_attempts, attempt, retry_initial,"
    " retry_factor, retry_cap, available_at, created_by, created_at, updated_at,"
    " idempotency_key) VALUES (:id, 'x', 'PENDING', 5, '{}', '[]', '[]', '[]', '[]', false,"
    " 3, 0, 1, 2, 300, :now, 'user-1', :now, :now, :key)"
)


async def test_sparse_task_indexes_keep_every_row_and_their_guarantees(
    empty_db: Database,
) -> None:
    """0021 turns the idempotency constraint into a partial unique index and
    leaves unassigned tasks out of the agent index. On SQLite that copies the
    tasks table: the rows that refer to a task (its
    routing decisions, ON DELETE CASCADE) survive the copy, foreign keys are
    enforced again afterwards, and keys stay unique per principal."""
    await migrate.upgrade(empty_db, "0020")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    async with empty_db.engine.begin() as conn:
        await conn.execute(_TASK_SQL, {"id": "t1", "now": now, "key": "k1"})
        await conn.execute(
            text(
                "INSERT INTO task_routing (task_id, attempt, decided_at, decision)"
                " VALUES ('t1', 1, :now, '{}')"
            ),
            {"now": now},
        )
    await migrate.upgrade(empty_db, "0021")
    async with empty_db.engine.begin() as conn:
        routing = (await conn.execute(text("SELECT task_id FROM task_routing"))).scalars().all()
        assert routing == ["t1"]
        for task_id in ("t2", "t3"):  # unkeyed tasks never collide
            await conn.execute(_TASK_SQL, {"id": task_id, "now": now, "key": None})
    with pytest.raises(IntegrityError):
        async with empty_db.engine.begin() as conn:
            await conn.execute(_TASK_SQL, {"id": "t4", "now": now, "key": "k1"})
    with pytest.raises(IntegrityError):  # foreign keys on again: no routing without its task
        async with empty_db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO task_routing (task_id, attempt, decided_at, decision)"
                    " VALUES ('nope', 1, :now, '{}')"
                ),
                {"now": now},
            )
    async with empty_db.engine.connect() as conn:
        if empty_db.dialect == "sqlite":
            for where, index in (
                ("idempotency_key = 'k1'", "uq_tasks_idempotency"),
                ("agent_id = 'a1'", "ix_tasks_agent_status"),
            ):
                plan = " ".join(
                    str(row[-1])
                    for row in await conn.execute(
                        text(f"EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE {where}")
                    )
                )
                assert index in plan
        else:
            where = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT indexrelid::regclass::text, pg_get_expr(indpred, indrelid)"
                            " FROM pg_index WHERE indrelid = 'tasks'::regclass"
                        )
                    )
                ).all()
            )
            assert where["uq_tasks_idempotency"] == "(idempotency_key IS NOT NULL)"
            assert where["ix_tasks_agent_status"] == "(agent_id IS NOT NULL)"


async def test_task_routing_keeps_its_rows_without_a_foreign_key(empty_db: Database) -> None:
    """0022 drops task_routing's foreign key (a lookup and a row lock per insert)
    and, on PostgreSQL, keeps the explanation as plain json: every row and its
    document survive, and the model matches; downgrading restores both."""
    await migrate.upgrade(empty_db, "0021")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    decision = {"strategy": "least_loaded", "chosen": {"agent_id": "a1", "why": "ünïcode"}}
    async with empty_db.engine.begin() as conn:
        await conn.execute(_TASK_SQL, {"id": "t1", "now": now, "key": None})
        await conn.execute(
            text(
                "INSERT INTO task_routing (task_id, attempt, decided_at, decision)"
                " VALUES ('t1', 1, :now, :decision)"
            ),
            {"now": now, "decision": json.dumps(decision)},
        )
    await migrate.upgrade(empty_db)
    assert await _schema_diff(empty_db) == []

    def column_type(conn: Any) -> str:
        if empty_db.dialect != "postgresql":
            return "json"
        return str(
            conn.execute(
                text(
                    "SELECT data_type FROM information_schema.columns"
                    " WHERE table_name = 'task_routing' AND column_name = 'decision'"
                )
            ).scalar_one()
        )

    async with empty_db.engine.begin() as conn:
        assert await conn.run_sync(column_type) == "json"
        row = (await conn.execute(text("SELECT task_id, decision FROM task_routing"))).one()
        stored = row[1] if isinstance(row[1], dict) else json.loads(row[1])
        assert (row[0], stored) == ("t1", decision)
        fks = await conn.run_sync(lambda c: inspect(c).get_foreign_keys("task_routing"))
        assert fks == []

    await migrate.downgrade(empty_db, "0021")
    async with empty_db.engine.begin() as conn:
        fks = await conn.run_sync(lambda c: inspect(c).get_foreign_keys("task_routing"))
        assert [fk["referred_table"] for fk in fks] == ["tasks"]
        if empty_db.dialect == "postgresql":
            assert await conn.run_sync(column_type) == "jsonb"
        count = (await conn.execute(text("SELECT count(*) FROM task_routing"))).scalar_one()
        assert count == 1

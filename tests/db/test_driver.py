"""Rows the hot path writes at the driver level (ymera.db.driver) read back through
the ORM exactly as if the ORM had written them, and the other way round."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from ymera.db import driver, migrate
from ymera.db.database import Database
from ymera.events.outbox import record_event
from ymera.kit.ids import new_id
from ymera.models.events import Event, EventSequencer
from ymera.models.tasks import Task, TaskRouting
from ymera.tasks import repository
from ymera.tasks.service import _UNSET_AT_SUBMIT


@pytest.fixture
async def db(empty_database_url: str) -> AsyncIterator[Database]:
    database = Database(empty_database_url)
    await migrate.upgrade(database)
    try:
        yield database
    finally:
        await database.dispose()


def test_render_numbers_placeholders_for_postgresql() -> None:
    template = "UPDATE t SET a = ?, b = ? WHERE id = ?"
    assert driver.render(template, "sqlite") == template
    assert driver.render(template, "postgresql") == "UPDATE t SET a = $1, b = $2 WHERE id = $3"


def _new_task(now: datetime) -> dict[str, object]:
    return {
        "id": new_id(),
        "type": "t",
        "status": "PENDING",
        "priority": 7,
        "input": {"text": "héllo", "n": [1, 2.5, None], "nested": {"ok": True}},
        "required_capabilities": ["python"],
        "file_ids": [],
        "preferred_agents": ["a1"],
        "excluded_agents": [],
        "preferred_only": True,
        "max_attempts": 4,
        "attempt": 0,
        "retry_initial": 0.5,
        "retry_factor": 3.0,
        "retry_cap": 60.0,
        "timeout_seconds": 12.5,
        # Another zone and a whole second: stored as UTC, read back equal.
        "deadline": datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        "available_at": now,
        "idempotency_key": None,
        "request_hash": None,
        "idempotency_expires_at": None,
        "created_by": "u1",
        "workflow_step_id": None,
        "agent_type": None,
        "workspace_id": None,
        "workspace_mode": None,
        "created_at": now,
        "updated_at": now,
        **_UNSET_AT_SUBMIT,
    }


async def test_tasks_written_at_the_driver_level_read_back_through_the_orm(db: Database) -> None:
    now = datetime(2026, 12, 6, 9, 30, 0, 123456, tzinfo=UTC)
    row = _new_task(now)
    async with db.transaction() as session:
        await repository.insert_tasks(session, [row])
    async with db.transaction(readonly=True) as session:
        task = (await session.execute(select(Task).where(Task.id == row["id"]))).scalar_one()
    for name, value in row.items():
        assert getattr(task, name) == value, name
    assert task.result is None
    assert task.error is None


async def test_report_rows_round_trip_at_the_driver_level(db: Database) -> None:
    now = datetime(2026, 12, 6, 9, 30, 0, tzinfo=UTC)
    row = _new_task(now)
    async with db.transaction() as session:
        await repository.insert_tasks(session, [row])
    later = now + timedelta(seconds=3, microseconds=7)
    async with db.transaction() as session:
        report = await repository.get_row(session, str(row["id"]))
        assert report is not None
        assert report.available_at == now
        assert report.result is None
        report.status = "SUCCEEDED"
        report.result = {"answer": 42, "words": ["a", "b"]}
        report.finished_at = later
        report.progress = 100.0
    async with db.transaction(readonly=True) as session:
        task = (await session.execute(select(Task).where(Task.id == row["id"]))).scalar_one()
    assert (task.status, task.result, task.finished_at, task.progress) == (
        "SUCCEEDED",
        {"answer": 42, "words": ["a", "b"]},
        later,
        100.0,
    )
    # And what the ORM writes, the driver-level read gets.
    async with db.transaction() as session:
        orm = (await session.execute(select(Task).where(Task.id == row["id"]))).scalar_one()
        orm.error = {"message": "x"}
        orm.started_at = later
    async with db.transaction() as session:
        again = await repository.get_row(session, str(row["id"]))
        assert again is not None
        assert (again.error, again.started_at) == ({"message": "x"}, later)


async def test_events_written_at_the_driver_level_read_back_through_the_orm(db: Database) -> None:
    async with db.transaction() as session:
        record_event(
            session,
            type="task.succeeded",
            resource_type="task",
            resource_id="t1",
            data={"from": "RUNNING", "to": "SUCCEEDED", "n": 1.5},
            actor="a1",
        )
    async with db.transaction(readonly=True) as session:
        event = (await session.execute(select(Event))).scalar_one()
    assert (event.type, event.resource_id, event.actor) == ("task.succeeded", "t1", "a1")
    assert event.data == {"from": "RUNNING", "to": "SUCCEEDED", "n": 1.5}
    assert event.created_at.tzinfo is not None
    assert abs(event.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_driver_level_statements_share_the_transaction_and_raise_sqlalchemy_errors(
    db: Database,
) -> None:
    """A duplicate id raises SQLAlchemy's IntegrityError (callers such as the
    Idempotency-Key check catch it), and rolls back the whole unit of work,
    including what ran earlier in it at the driver level."""
    now = datetime(2026, 12, 6, 9, 30, 0, tzinfo=UTC)
    first, second = _new_task(now), _new_task(now)
    async with db.transaction() as session:
        await repository.insert_tasks(session, [first])

    async def both() -> None:
        async with db.transaction() as session:
            await repository.insert_tasks(session, [second])
            await repository.insert_tasks(session, [first])  # the same id again

    with pytest.raises(IntegrityError):
        await both()
    async with db.transaction(readonly=True) as session:
        ids = set((await session.execute(select(Task.id))).scalars())
    assert ids == {first["id"]}  # the second task rolled back with the failure
    async with db.transaction() as session:  # the connection is fine afterwards
        await repository.insert_tasks(session, [second])
    async with db.transaction(readonly=True) as session:
        assert len(set((await session.execute(select(Task.id))).scalars())) == 2


async def test_events_are_numbered_in_order_with_or_without_the_sequencer_row(
    db: Database,
) -> None:
    """PostgreSQL numbers and inserts a commit's events in one statement; without
    the sequencer row (never created) the row is created and numbering starts at 1."""
    async with db.transaction() as session:
        await session.execute(delete(EventSequencer))
    for batch in (3, 2):
        async with db.transaction() as session:
            for i in range(batch):
                record_event(
                    session, type="t.x", resource_type="t", resource_id=f"r{i}", data={"i": i}
                )
    async with db.transaction(readonly=True) as session:
        events = (await session.execute(select(Event).order_by(Event.seq))).scalars().all()
        last = (await session.execute(select(EventSequencer.last_seq))).scalar_one()
    assert [(e.seq, e.resource_id, e.data) for e in events] == [
        (1, "r0", {"i": 0}),
        (2, "r1", {"i": 1}),
        (3, "r2", {"i": 2}),
        (4, "r0", {"i": 0}),
        (5, "r1", {"i": 1}),
    ]
    assert last == 5


async def test_many_rows_at_once_read_back_the_same(db: Database) -> None:
    """Several rows in one call (PostgreSQL: one statement over arrays): every
    value, NULLs and JSON included, reads back as written."""
    now = datetime(2026, 12, 6, 9, 30, 0, 250000, tzinfo=UTC)
    rows = [_new_task(now) for _ in range(3)]
    rows[1]["deadline"] = None
    rows[2]["input"] = {}
    rows[2]["timeout_seconds"] = None
    async with db.transaction() as session:
        await repository.insert_tasks(session, rows)
    later = now + timedelta(seconds=1)
    await _finish(db, rows[:2], lambda i: {"i": i}, later)
    async with db.transaction(readonly=True) as session:
        tasks = {t.id: t for t in (await session.execute(select(Task))).scalars()}
    for i, row in enumerate(rows):
        task = tasks[row["id"]]
        for name, value in row.items():
            if i < 2 and name in ("status", "finished_at"):
                continue
            assert getattr(task, name) == value, (i, name)
        if i < 2:
            assert (task.status, task.result, task.finished_at) == ("SUCCEEDED", {"i": i}, later)
        else:
            assert (task.status, task.result, task.finished_at) == ("PENDING", None, None)


# Strings that a column sent as one joined string (PostgreSQL, driver.join_text)
# must keep apart: the separators themselves (the column then goes as an array),
# the empty string, NULL, and text beyond ASCII.
_AWKWARD = ["a\x1fb", "", "\x1e", "héllo ✓", "x\x1e", "plain"]


async def test_strings_with_separators_empty_or_null_read_back_the_same(db: Database) -> None:
    """Columns of many rows with awkward strings (some with the characters a
    joined column is split on, some empty, some NULL) read back as written, in
    tasks inserted and updated, and in events."""
    now = datetime(2026, 12, 6, 9, 30, 0, tzinfo=UTC)
    rows = [_new_task(now) for _ in range(len(_AWKWARD))]
    for row, value in zip(rows, _AWKWARD, strict=True):
        row["type"] = value
        row["agent_type"] = None if value == "plain" else value.replace("\x1f", "")
        row["created_by"] = "user\x1e" if value == "" else "user"  # one column falls back
    for row, key in zip(rows, ["", None, "héllo ✓", None, "k1", "k2"], strict=True):
        row["idempotency_key"] = key  # a joined column: empty, NULL, beyond ASCII
    async with db.transaction() as session:
        await repository.insert_tasks(session, rows)
        for i, value in enumerate(_AWKWARD):
            record_event(
                session,
                type=value or "t",
                resource_type="task",
                resource_id=rows[i]["id"],
                data={"v": value},
                actor=None if i % 2 else value,
            )
    async with db.transaction() as session:  # an update of text columns
        await repository.lock_rows(session, [str(r["id"]) for r in rows])
        for i, row in enumerate(rows):
            report = await repository.get_row(session, str(row["id"]))
            assert report is not None
            report.status = "SUCCEEDED"
            report.result = {"v": _AWKWARD[i]}
            report.progress_message = ["", None, "héllo ✓", "p", None, ""][i]  # joined
            report.lease_token = _AWKWARD[-1 - i] or None  # an array
    async with db.transaction(readonly=True) as session:
        tasks = {t.id: t for t in (await session.execute(select(Task))).scalars()}
        events = (await session.execute(select(Event).order_by(Event.seq))).scalars().all()
    for i, row in enumerate(rows):
        task = tasks[row["id"]]
        assert (task.type, task.agent_type, task.created_by) == (
            row["type"],
            row["agent_type"],
            row["created_by"],
        )
        assert (task.status, task.result) == ("SUCCEEDED", {"v": _AWKWARD[i]})
        assert task.idempotency_key == row["idempotency_key"]
        assert task.progress_message == ["", None, "héllo ✓", "p", None, ""][i]
        assert task.lease_token == (_AWKWARD[-1 - i] or None)
    assert [(e.type, e.resource_id, e.data, e.actor) for e in events] == [
        (value or "t", rows[i]["id"], {"v": value}, None if i % 2 else value)
        for i, value in enumerate(_AWKWARD)
    ]


def test_a_column_of_strings_is_joined_unless_a_value_holds_a_separator() -> None:
    assert driver.join_text(["a", None, ""]) == "a\x1f\x1e\x1f"
    assert driver.join_text(["a\x1fb", "c"]) is None
    assert driver.join_text(["\x1e", None]) is None  # the value would read back as NULL
    assert driver.join_text([1, 2]) is None
    template = driver.insert_sql("events", ("type", "resource_type", "actor", "seq"))
    sql, params = driver._batch_params(
        template, [("a", "task", "x\x1fy", 1), ("b", "task", None, 2)]
    )
    assert sql is not None
    assert "unnest(string_to_array($1, E'\\x1f', E'\\x1e')" in sql
    assert "$3::text[]" in sql
    assert "$4::BIGINT[]" in sql
    assert params == ["a\x1fb", "task\x1ftask", ["x\x1fy", None], [1, 2]]


# SQLite does not enforce lengths.
@pytest.mark.parametrize("backend", ["postgresql-redis"], indirect=True)
async def test_a_value_too_long_for_its_column_fails_on_postgresql(db: Database) -> None:
    """Many rows at once still refuse a string longer than its column (never cut)."""
    assert db.url.startswith("postgresql")
    now = datetime(2026, 12, 6, 9, 30, 0, tzinfo=UTC)
    rows = [_new_task(now) for _ in range(2)]
    rows[1]["type"] = "x" * 101  # tasks.type is VARCHAR(100)

    async def insert() -> None:
        async with db.transaction() as session:
            await repository.insert_tasks(session, rows)

    with pytest.raises(DBAPIError):
        await insert()


async def test_a_large_batch_with_shared_values_reads_back_the_same(db: Database) -> None:
    """A batch large enough that PostgreSQL gets the columns whose rows all hold
    one value (instants, NULLs, JSON) as one value each: every row reads back as
    written, inserted and updated, and the varying columns stay per row."""
    now = datetime(2026, 12, 6, 9, 30, 0, 250000, tzinfo=UTC)
    count = driver.SCALAR_MIN_ROWS + 4
    rows = [_new_task(now) for _ in range(count)]
    for i, row in enumerate(rows):
        row["priority"] = i % 3
        row["deadline"] = None
    async with db.transaction() as session:
        await repository.insert_tasks(session, rows)
    later = now + timedelta(seconds=1)
    await _finish(db, rows, lambda i: {"ok": True} if i % 2 else {"i": i}, later)
    async with db.transaction(readonly=True) as session:
        tasks = {t.id: t for t in (await session.execute(select(Task))).scalars()}
    assert len(tasks) == count
    for i, row in enumerate(rows):
        task = tasks[row["id"]]
        for name, value in row.items():
            if name not in ("status", "finished_at"):
                assert getattr(task, name) == value, (i, name)
        expected = {"ok": True} if i % 2 else {"i": i}
        assert (task.status, task.result, task.finished_at) == ("SUCCEEDED", expected, later)


@pytest.mark.parametrize("backend", ["postgresql-redis"], indirect=True)
async def test_a_shared_value_too_long_for_its_column_fails_on_postgresql(db: Database) -> None:
    """A value shared by every row of a large batch (sent once) is still refused
    when it is longer than its column, never cut."""
    now = datetime(2026, 12, 6, 9, 30, 0, tzinfo=UTC)
    rows = [_new_task(now) for _ in range(driver.SCALAR_MIN_ROWS)]
    for row in rows:
        row["type"] = "x" * 101  # tasks.type is VARCHAR(100)

    async def insert() -> None:
        async with db.transaction() as session:
            await repository.insert_tasks(session, rows)

    with pytest.raises(DBAPIError):
        await insert()


async def test_a_batch_wider_than_one_statement_reads_back_the_same(db: Database) -> None:
    """More rows than one multi-row statement holds on SQLite (full statements
    and a rest row by row): inserted, assigned and saved, every row reads back
    as written, on both databases."""
    now = datetime(2026, 12, 6, 9, 30, 0, 250000, tzinfo=UTC)
    count = 2 * driver.SQLITE_ROWS + 3
    rows = [_new_task(now) for _ in range(count)]
    for i, row in enumerate(rows):
        row["priority"] = i % 10
        row["input"] = {"i": i}
    async with db.transaction() as session:
        await repository.insert_tasks(session, rows)
    later = now + timedelta(seconds=1)
    async with db.transaction() as session:
        await repository.assign_many(session, _assignments(rows, later))
    # The last one stays ASSIGNED.
    await _finish(db, rows[: count - 1], lambda i: {"done": i}, later)
    async with db.transaction(readonly=True) as session:
        tasks = {t.id: t for t in (await session.execute(select(Task))).scalars()}
    assert len(tasks) == count
    for i, row in enumerate(rows):
        task = tasks[row["id"]]
        assert (task.input, task.priority, task.attempt, task.lease_token) == (
            {"i": i},
            i % 10,
            1,
            f"token-{i}",
        )
        assert task.lease_expires_at == later + timedelta(seconds=i)
        if i < count - 1:
            assert (task.status, task.result, task.finished_at) == ("SUCCEEDED", {"done": i}, later)
        else:
            assert (task.status, task.result, task.finished_at) == ("ASSIGNED", None, None)


def _assignments(rows: list[dict[str, object]], at: datetime) -> list[dict[str, object]]:
    """``repository.assign_many``'s rows assigning ``rows`` at ``at``: the i-th
    with lease token ``token-i``, its lease ending i seconds later, and the
    routing decision ``{"i": i}``."""
    return [
        {
            "id": row["id"],
            "status": "ASSIGNED",
            "attempt": 1,
            "agent_id": None,  # (no agents here: the column is a foreign key)
            "lease_token": f"token-{i}",
            "lease_expires_at": at + timedelta(seconds=i),
            "assigned_at": at,
            "updated_at": at,
            "routing": {"i": i},
        }
        for i, row in enumerate(rows)
    ]


def test_sqlite_runs_a_batch_as_statements_of_many_rows() -> None:
    """Full statements of several rows, then the rest row by row; an update that
    names a key twice keeps one statement per row (an UPDATE ... FROM would
    apply only one of them)."""
    template = driver.update_sql("tasks", ("status", "priority"))
    per = driver.SQLITE_ROWS
    rows = [("DONE", i, f"id-{i}") for i in range(2 * per + 5)]
    (many, chunks), (one, rest) = driver._sqlite_statements(template, rows)
    assert "FROM (VALUES" in many
    assert many.count("(?, ?, ?)") == per
    assert chunks == [sum(rows[:per], ()), sum(rows[per : 2 * per], ())]
    assert (one, rest) == (template, rows[2 * per :])
    assert driver._sqlite_statements(template, rows[:5]) == [(template, rows[:5])]
    twice = [*rows[:per], ("AGAIN", 0, "id-0")]
    assert driver._sqlite_statements(template, twice) == [(template, twice)]
    wide = driver.insert_sql("tasks", tuple(f"c{i}" for i in range(100)))
    ((sql, params),) = driver._sqlite_statements(wide, [tuple(range(100))] * 9)
    assert sql.count("(" + ", ".join("?" * 100) + ")") == 9  # 999 values at most
    assert params == [tuple(range(100)) * 9]


async def test_an_update_naming_a_key_twice_applies_both_in_order(db: Database) -> None:
    now = datetime(2026, 12, 6, 9, 30, 0, tzinfo=UTC)
    rows = [_new_task(now) for _ in range(driver.SQLITE_ROWS + 1)]
    async with db.transaction() as session:
        await repository.insert_tasks(session, rows)
    template = driver.update_sql("tasks", ("priority",))
    params = [(1, r["id"]) for r in rows] + [(9, rows[0]["id"])]
    async with db.transaction() as session:
        await driver.execute_many(await session.connection(), template, params)
    async with db.transaction(readonly=True) as session:
        result = await session.execute(select(Task.id, Task.priority))
        found: dict[str, int] = dict(result.all())  # type: ignore[arg-type]
    assert found[rows[0]["id"]] == 9
    assert all(found[r["id"]] == 1 for r in rows[1:])


async def _finish(
    db: Database,
    rows: list[dict[str, Any]],
    result: Callable[[int], dict[str, Any]],
    at: datetime,
) -> None:
    """Lock these tasks' report rows and save each as SUCCEEDED with result
    ``result(its index)``, finished ``at``."""
    async with db.transaction() as session:
        await repository.lock_rows(session, [str(r["id"]) for r in rows])
        for i, row in enumerate(rows):
            report = await repository.get_row(session, str(row["id"]))
            assert report is not None
            report.status = "SUCCEEDED"
            report.result = result(i)
            report.finished_at = at


@pytest.mark.parametrize("count", [1, 3, driver.SCALAR_MIN_ROWS + 2])
async def test_assignments_and_their_routing_decisions_are_written_together(
    db: Database, count: int
) -> None:
    """An assignment batch's task UPDATE and its routing decisions' INSERT: every
    task reads back assigned and every decision is kept, one per task; a failure
    in either rolls back both."""
    now = datetime(2026, 12, 6, 9, 30, 0, 250000, tzinfo=UTC)
    rows = [_new_task(now) for _ in range(count)]
    async with db.transaction() as session:
        await repository.insert_tasks(session, rows)
    later = now + timedelta(seconds=2)
    updates = _assignments(rows, later)
    async with db.transaction() as session:
        await repository.assign_many(session, updates)
    async with db.transaction(readonly=True) as session:
        tasks = {t.id: t for t in (await session.execute(select(Task))).scalars()}
        decisions = {d.task_id: d for d in (await session.execute(select(TaskRouting))).scalars()}
    assert len(decisions) == count
    for i, row in enumerate(rows):
        task = tasks[str(row["id"])]
        assert (task.status, task.attempt, task.lease_token) == ("ASSIGNED", 1, f"token-{i}")
        assert (task.assigned_at, task.lease_expires_at) == (later, later + timedelta(seconds=i))
        decision = decisions[str(row["id"])]
        assert (decision.attempt, decision.decided_at) == (1, later)
        assert decision.decision == {"i": i}

    async def again() -> None:  # the decisions exist: the INSERT fails, the UPDATE too
        async with db.transaction() as session:
            await repository.assign_many(
                session, [{**u, "lease_token": "second", "attempt": 1} for u in updates]
            )

    with pytest.raises(IntegrityError):
        await again()
    async with db.transaction(readonly=True) as session:
        tokens = set((await session.execute(select(Task.lease_token))).scalars())
    assert "second" not in tokens

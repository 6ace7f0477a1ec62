"""Rows the hot path writes at the driver level (ymera.db.driver) read back through
the ORM exactly as if the ORM had written them, and the other way round."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from ymera.db import driver, migrate
from ymera.db.database import Database
from ymera.events.outbox import record_event
from ymera.kit.ids import new_id
from ymera.models.events import Event
from ymera.models.tasks import Task
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

"""A commit that ends many tasks records all their experiences with one
statement (over arrays on PostgreSQL): every row gets its task's type and a
summary cut from its input, in the order the tasks finished, whether the rows
share one instant or not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, text

from tests.conftest import AppHarness
from ymera.auth.permissions import Role
from ymera.kit import jsonx
from ymera.kit.clock import utcnow
from ymera.knowledge import recorder
from ymera.models.knowledge import Experience
from ymera.tasks import hooks


async def _submit(harness: AppHarness, count: int) -> list[str]:
    dev = await harness.headers(Role.DEVELOPER)
    tasks = [
        {"type": f"kind_{i % 3}", "input": {"package": f"pkg-{i}-" + "x" * 50}}
        for i in range(count)
    ]
    resp = await harness.client.post("/api/v1/tasks/batch", json={"tasks": tasks}, headers=dev)
    assert resp.status_code == 201, resp.text
    return [t["id"] for t in resp.json()]


_BASE = utcnow()


async def _finish(session: Any, task_id: str, i: int, at_offset: float) -> hooks.TaskFinished:
    """End the task's row as the engine would, and what the hook is told."""
    ok = i % 4 != 3
    await session.execute(
        text("UPDATE tasks SET status = :s, result = :r, error = :e WHERE id = :id"),
        {
            "s": "SUCCEEDED" if ok else "FAILED",
            "r": jsonx.dumps({"built": f"wheel-{i}"}) if ok else None,
            "e": None if ok else jsonx.dumps({"message": f"crash {i}", "type": "error"}),
            "id": task_id,
        },
    )
    return hooks.TaskFinished(
        id=task_id,
        type="ignored",  # the row takes the type stored with the task
        status="SUCCEEDED" if ok else "FAILED",
        attempt=1,
        agent_id=_agent(i),
        workflow_step_id=None,
        result={"built": f"wheel-{i}"} if ok else None,
        error=None if ok else {"message": f"crash {i}"},
        at=_BASE + timedelta(seconds=at_offset),
    )


def _agent(i: int) -> str | None:
    """The agent of the i-th task: none for some (a task failed before any ran it)."""
    return None if i % 7 == 5 else f"agent-{i % 2}"


async def test_one_commit_records_many_experiences(harness: AppHarness) -> None:
    ids = await _submit(harness, 40)
    harness.settings.knowledge.summary_chars = 30
    db = harness.state.db
    shared = _BASE
    async with db.transaction() as session:  # rows sharing one instant
        for i, task_id in enumerate(ids[:20]):
            finished = await _finish(session, task_id, i, 0)
            await recorder.record(
                session,
                hooks.TaskFinished(**{**finished.__dict__, "at": shared}),
            )
    async with db.transaction() as session:  # an instant per row
        for i, task_id in enumerate(ids[20:], 20):
            await recorder.record(session, await _finish(session, task_id, i, i))
    async with db.transaction() as session:
        rows = (await session.execute(select(Experience).order_by(Experience.seq))).scalars().all()
    assert [r.task_id for r in rows] == ids  # in the order the tasks finished
    for i, row in enumerate(rows):
        assert row.task_type == f"kind_{i % 3}"
        assert f"pkg-{i}-x" in row.summary
        assert len(row.summary) == 30  # cut to summary_chars
        assert row.agent_id == _agent(i)
        assert row.source == "task"
        if i % 4 == 3:
            assert (row.outcome, row.notes) == ("FAILED", f"crash {i}")
        else:
            assert row.outcome == "SUCCEEDED"
            assert f"wheel-{i}" in row.notes
    assert len({r.created_at for r in rows[:20]}) == 1
    assert len({r.created_at for r in rows[20:]}) == 20
    assert rows[21].created_at - rows[20].created_at == timedelta(seconds=1)
    # The text index holds them too.
    viewer = await harness.headers(Role.VIEWER)
    hits = await harness.client.get("/api/v1/knowledge", params={"q": "crash"}, headers=viewer)
    assert {e["task_id"] for e in hits.json()["items"]} == {ids[i] for i in range(3, 40, 4)}

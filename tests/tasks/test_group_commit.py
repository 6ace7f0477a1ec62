"""The group-commit writer: concurrent submits (and reports) share transactions,
every acknowledged submit is durable, and one bad item does not sink the batch."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from tests.conftest import AppHarness
from ymera.auth.permissions import Role
from ymera.models.events import Event
from ymera.models.tasks import Task
from ymera.tasks.writer import TaskWriter


async def test_concurrent_submits_share_commits_and_are_durable(harness: AppHarness) -> None:
    headers = await harness.headers(Role.DEVELOPER)
    writer: TaskWriter = harness.state.extras["writer"]
    batches, applied = writer.batches, writer.applied

    responses = await asyncio.gather(
        *(
            harness.client.post(
                "/api/v1/tasks", json={"type": "gc", "input": {"n": i}}, headers=headers
            )
            for i in range(60)
        )
    )
    assert [r.status_code for r in responses] == [201] * 60, responses[0].text
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 60
    assert writer.applied - applied == 60
    # Fewer commits than submits: requests that arrive while a batch is being
    # written go into the next one together.
    assert writer.batches - batches < 60

    async with harness.state.db.transaction(readonly=True) as session:
        stored = set((await session.scalars(select(Task.id).where(Task.id.in_(ids)))).all())
        events = await session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.resource_id.in_(ids), Event.type == "task.pending")
        )
    assert stored == ids
    assert events == 60


async def test_a_failing_item_fails_alone(harness: AppHarness) -> None:
    writer: TaskWriter = harness.state.extras["writer"]

    async def good(session: object) -> str:
        return "ok"

    async def bad(session: object) -> str:
        raise RuntimeError("boom")

    futures = [writer.submit(good), writer.submit(bad), writer.submit(good)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == "ok"
    assert results[2] == "ok"
    assert isinstance(results[1], RuntimeError)

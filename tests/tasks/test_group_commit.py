"""The group-commit writer: concurrent submits (and reports) share transactions,
every acknowledged submit is durable, and one bad item does not sink the batch."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer
from tests.fixtures.waiting import wait_until
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


async def test_a_failing_claim_does_not_lose_the_submit(live: LiveServer) -> None:
    """The writer claims for local workers in the submit's own transaction; if
    that claim fails, the submit is committed anyway (replayed without it) and
    the dispatcher's own pass assigns the task."""
    import json

    import websockets

    from tests.agents.test_worker_protocol import agent_and_key, hello, next_frame, ws_url

    _, key = await agent_and_key(live, "claimfail")
    h = live.harness
    dispatcher = h.state.extras["dispatcher"]
    real_slots = dispatcher._slots  # every claim reads its agents' slots first
    failures = 0

    async def failing_once(*args: object, **kwargs: object) -> object:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("claim broke")
        return await real_slots(*args, **kwargs)

    dispatcher._slots = failing_once
    dev = await h.headers(Role.DEVELOPER)
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=2)
        resp = await h.client.post("/api/v1/tasks", json={"type": "t"}, headers=dev)
        assert resp.status_code == 201, resp.text
        assign = await next_frame(ws, "assign")
        assert assign["task_id"] == resp.json()["id"]
        assert failures == 1
        ids = {k: assign[k] for k in ("task_id", "attempt", "lease_token")}
        await ws.send(json.dumps({"type": "result", **ids, "output": {}}))
        await next_frame(ws, "ack")


async def test_a_submit_replayed_after_its_rows_were_assigned_inserts_them_afresh(
    live: LiveServer, monkeypatch: object
) -> None:
    """The writer assigns new tasks in place as it inserts them (nothing older
    waits). If that transaction then fails, the replay builds the rows again:
    the task committed is the one answered, PENDING, and then assigned and
    delivered, not a row left ASSIGNED by the failed attempt."""
    import pytest

    from tests.agents.test_worker_protocol import agent_and_key, hello, next_frame, ws_url
    from ymera.tasks import claims

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    import websockets

    _, key = await agent_and_key(live, "replayrows")
    h = live.harness
    real = claims.assign_new
    failures = 0

    def assign_then_fail(*args: object, **kwargs: object) -> object:
        nonlocal failures
        assignments = real(*args, **kwargs)  # type: ignore[arg-type]
        if failures == 0 and assignments:
            failures += 1
            raise RuntimeError("after the rows were assigned")
        return assignments

    monkeypatch.setattr(claims, "assign_new", assign_then_fail)
    dev = await h.headers(Role.DEVELOPER)
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=2)
        dispatcher = h.state.extras["dispatcher"]
        # Nothing queued (the pass the worker's arrival started has run): the
        # writer assigns the new task as it inserts it.
        await wait_until(lambda: not dispatcher.may_have_backlog, timeout=10)
        resp = await h.client.post("/api/v1/tasks", json={"type": "t"}, headers=dev)
        assert resp.status_code == 201, resp.text
        assert failures == 1
        task_id = resp.json()["id"]
        assign = await next_frame(ws, "assign")
        assert assign["task_id"] == task_id
        assert assign["attempt"] == 1
    async with h.state.db.transaction(readonly=True) as session:
        tasks = (await session.scalars(select(Task).where(Task.type == "t"))).all()
    assert [t.id for t in tasks] == [task_id]

"""Finished-task listeners run once per final state, inside the transaction that
moves the task: a failing listener rolls the task's change back with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncSession

from tests.agents.test_worker_protocol import agent_and_key, hello, next_frame, ws_url
from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role
from ymera.tasks import hooks, leases


@pytest.fixture
def finished() -> Iterator[list[hooks.TaskFinished]]:
    seen: list[hooks.TaskFinished] = []

    async def listener(session: AsyncSession, event: hooks.TaskFinished) -> None:
        assert session.in_transaction()
        seen.append(event)

    hooks.on_task_finished(listener)
    hooks.on_task_finished(listener)  # registering twice is a no-op
    try:
        yield seen
    finally:
        hooks.remove_listener(listener)


async def test_success_and_cancel_are_each_told_once(
    live: LiveServer, finished: list[hooks.TaskFinished]
) -> None:
    _, key = await agent_and_key(live, "hooked")
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    done = (await h.client.post("/api/v1/tasks", json={"type": "t"}, headers=dev)).json()
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=1, task_types=["t"])
        assign = await next_frame(ws, "assign")
        ids = {k: assign[k] for k in ("task_id", "attempt", "lease_token")}
        await ws.send(json.dumps({"type": "result", **ids, "output": {"answer": 42}}))
        await next_frame(ws, "ack")
    cancelled = (await h.client.post("/api/v1/tasks", json={"type": "u"}, headers=dev)).json()
    resp = await h.client.post(f"/api/v1/tasks/{cancelled['id']}/cancel", headers=dev)
    assert resp.status_code == 200, resp.text

    assert [(e.id, e.status) for e in finished] == [
        (done["id"], "SUCCEEDED"),
        (cancelled["id"], "CANCELLED"),
    ]
    assert finished[0].result == {"answer": 42}
    assert finished[0].attempt == 1
    assert (finished[1].error or {}).get("type") == "cancelled"


async def test_a_retry_is_not_an_end_but_the_last_attempt_is(
    harness: AppHarness, finished: list[hooks.TaskFinished]
) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    now = harness.state.clock.now()
    body = {"type": "late", "deadline": (now + timedelta(seconds=30)).isoformat()}
    task = (await harness.client.post("/api/v1/tasks", json=body, headers=dev)).json()
    async with harness.state.db.transaction() as session:
        await leases.fail_past_deadline(session, now=now + timedelta(minutes=1))
    assert [(e.id, e.status) for e in finished] == [(task["id"], "FAILED")]
    assert (finished[0].error or {}).get("type") == "deadline"


async def test_a_failing_listener_rolls_the_change_back(harness: AppHarness) -> None:
    async def broken(session: AsyncSession, event: hooks.TaskFinished) -> None:
        raise RuntimeError("listener failed")

    dev = await harness.headers(Role.DEVELOPER)
    task = (await harness.client.post("/api/v1/tasks", json={"type": "x"}, headers=dev)).json()
    hooks.on_task_finished(broken)
    try:
        resp = await harness.client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=dev)
        assert resp.status_code == 500
    finally:
        hooks.remove_listener(broken)
    again = (await harness.client.get(f"/api/v1/tasks/{task['id']}", headers=dev)).json()
    assert again["status"] == "PENDING"

"""Deadlines (a task past its deadline fails with a clear reason; a hand re-drive
starts clean) and the claim's view of the queue (tasks nobody can run now do not
hide the ones behind them)."""

from __future__ import annotations

import json
from datetime import timedelta

import websockets

from tests.agents.test_worker_protocol import agent_and_key, hello, next_frame, ws_url
from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role
from ymera.tasks import leases


async def test_past_deadline_fails_clearly_and_a_redrive_starts_clean(harness: AppHarness) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    now = harness.state.clock.now()
    resp = await harness.client.post(
        "/api/v1/tasks",
        json={"type": "nobody-runs-this", "deadline": (now + timedelta(seconds=60)).isoformat()},
        headers=dev,
    )
    assert resp.status_code == 201, resp.text
    task_id = resp.json()["id"]

    # The reaper's sweep, two minutes later: no agent took the task in time.
    async with harness.state.db.transaction() as session:
        late = await leases.fail_past_deadline(session, now=now + timedelta(minutes=2))
    assert [t.id for t in late] == [task_id]
    failed = (await harness.client.get(f"/api/v1/tasks/{task_id}", headers=dev)).json()
    assert failed["status"] == "FAILED"
    assert failed["error"]["type"] == "deadline"
    assert "deadline" in failed["error"]["message"]

    # Re-driven by hand: the passed deadline and the old error go, or the sweep
    # would fail it again at once.
    retried = await harness.client.post(f"/api/v1/tasks/{task_id}/retry", headers=dev)
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert (body["status"], body["deadline"], body["error"]) == ("PENDING", None, None)
    async with harness.state.db.transaction() as session:
        again = await leases.fail_past_deadline(session, now=now + timedelta(minutes=3))
    assert again == []


async def test_unrunnable_tasks_at_the_head_do_not_hide_runnable_ones(live: LiveServer) -> None:
    """Fifty high-priority tasks of a type no connected worker handles sit at the
    head of the queue; a low-priority task the worker does handle still runs."""
    _, key = await agent_and_key(live, "only-b", max_concurrency=2)
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    blocked = await h.client.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{"type": "a", "priority": 9}] * 50},
        headers=dev,
    )
    assert blocked.status_code == 201
    runnable = (
        await h.client.post("/api/v1/tasks", json={"type": "b", "priority": 0}, headers=dev)
    ).json()
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=2, task_types=["b"])
        assign = await next_frame(ws, "assign")
        assert assign["task_id"] == runnable["id"]
        ids = {k: assign[k] for k in ("task_id", "attempt", "lease_token")}
        await ws.send(json.dumps({"type": "result", **ids, "output": {}}))
        await next_frame(ws, "ack")
    pending = (
        await h.client.get("/api/v1/tasks", params={"status": "PENDING", "limit": 100}, headers=dev)
    ).json()
    assert len(pending["items"]) == 50  # the others still wait for a worker of type a

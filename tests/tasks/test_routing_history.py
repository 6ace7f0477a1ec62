"""Each assignment's routing explanation is kept (task_routing), and the API
answers the latest one."""

from __future__ import annotations

import json

import websockets
from sqlalchemy import select

from tests.agents.test_worker_protocol import agent_and_key, hello, next_frame, ws_url
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role
from ymera.models.tasks import TaskRouting


async def test_every_attempt_keeps_its_explanation(live: LiveServer) -> None:
    _, key = await agent_and_key(live, "explained")
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    body = {"type": "t", "retry": {"max_attempts": 3, "initial": 0, "factor": 1, "cap": 0}}
    task = (await h.client.post("/api/v1/tasks", json=body, headers=dev)).json()
    before = await h.client.get(f"/api/v1/tasks/{task['id']}/routing", headers=dev)
    assert before.json() == {"task_id": task["id"], "attempt": 0, "decision": None}

    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=1, task_types=["t"])
        first = await next_frame(ws, "assign")
        ids = {k: first[k] for k in ("task_id", "attempt", "lease_token")}
        error = {"message": "try again", "retryable": True}
        await ws.send(json.dumps({"type": "fail", **ids, "error": error}))
        second = await next_frame(ws, "assign")
        assert second["attempt"] == 2

    routing = (await h.client.get(f"/api/v1/tasks/{task['id']}/routing", headers=dev)).json()
    assert routing["attempt"] == 2
    assert routing["decision"]["chosen"]["name"] == "explained"
    async with h.state.db.transaction(readonly=True) as session:
        rows = (
            await session.execute(
                select(TaskRouting.attempt).where(TaskRouting.task_id == task["id"])
            )
        ).scalars()
        assert sorted(rows) == [1, 2]

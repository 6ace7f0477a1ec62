"""Tasks submitted while no older task waits are assigned as they are inserted
(one write per task, no read back): the highest priority first, with both of
their events, and the rest left PENDING when the slots run out."""

from __future__ import annotations

import websockets

from tests.agents.test_worker_protocol import agent_and_key, hello, next_frame, ws_url
from tests.fixtures.live import LiveServer
from tests.fixtures.waiting import wait_until
from ymera.auth.permissions import Role


async def test_a_batch_is_assigned_as_it_is_inserted_by_priority(live: LiveServer) -> None:
    _, key = await agent_and_key(live, "direct")
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    dispatcher = h.state.extras["dispatcher"]
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=1, task_types=["t"])
        await wait_until(lambda: not dispatcher.may_have_backlog, timeout=10)
        batch = [{"type": "t", "priority": p, "input": {"p": p}} for p in (1, 9, 5)]
        resp = await h.client.post("/api/v1/tasks/batch", json={"tasks": batch}, headers=dev)
        assert resp.status_code == 201, resp.text
        ids = {t["input"]["p"]: t["id"] for t in resp.json()}
        # Committed with the submit: the priority 9 task is ASSIGNED already.
        top = (await h.client.get(f"/api/v1/tasks/{ids[9]}", headers=dev)).json()
        assert (top["status"], top["attempt"]) == ("ASSIGNED", 1)
        for p in (1, 5):
            rest = (await h.client.get(f"/api/v1/tasks/{ids[p]}", headers=dev)).json()
            assert (rest["status"], rest["attempt"]) == ("PENDING", 0)
        assign = await next_frame(ws, "assign")
        assert assign["task_id"] == ids[9]
        assert assign["lease_token"]

    events = (
        await h.client.get(
            "/api/v1/events", params={"resource_id": ids[9], "limit": 10}, headers=dev
        )
    ).json()["items"]
    assert [e["type"] for e in events] == ["task.pending", "task.assigned"]
    assert events[1]["data"]["agent_id"] == top["agent_id"]
    routing = (await h.client.get(f"/api/v1/tasks/{ids[9]}/routing", headers=dev)).json()
    assert routing["attempt"] == 1
    assert routing["decision"]["chosen"]["name"] == "direct"

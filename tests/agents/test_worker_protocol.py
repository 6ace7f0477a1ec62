"""The worker protocol with a raw WebSocket client against a real server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.fixtures.live import LiveServer
from tests.fixtures.waiting import wait_until
from ymera.auth.permissions import Role


async def agent_and_key(live: LiveServer, name: str, **kw: Any) -> tuple[dict[str, Any], str]:
    h = live.harness
    admin = await h.headers(Role.ADMIN)
    agent = (
        await h.client.post(
            "/api/v1/agents", json={"name": name, "max_concurrency": 2, **kw}, headers=admin
        )
    ).json()
    key = await h.client.post(
        "/api/v1/api-keys", json={"name": name, "agent_id": agent["id"]}, headers=admin
    )
    return agent, key.json()["key"]


def ws_url(live: LiveServer) -> str:
    return live.base_url.replace("http://", "ws://") + "/api/v1/agents/connect"


async def hello(ws: Any, key: str, **extra: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "hello", "protocol": 1, "api_key": key, **extra}))
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


async def next_frame(ws: Any, kind: str, timeout: float = 10) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return dict(frame)

    return await asyncio.wait_for(read(), timeout)


async def closed_with(ws: Any) -> int | None:
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 10)
    return info.value.rcvd.code if info.value.rcvd else None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "hello", "protocol": 1, "api_key": "ymk_nonsense"}, 4401),
        ({"type": "hello", "protocol": 99, "api_key": "x"}, 4409),
        ({"type": "heartbeat"}, 4400),
        ({"type": "hello", "protocol": 1}, 4401),
    ],
)
async def test_handshake_refusals(live: LiveServer, frame: dict[str, Any], code: int) -> None:
    async with websockets.connect(ws_url(live)) as ws:
        await ws.send(json.dumps(frame))
        assert await closed_with(ws) == code


async def test_user_key_is_not_an_agent_key(live: LiveServer) -> None:
    admin = await live.harness.headers(Role.ADMIN)
    key = (
        await live.harness.client.post("/api/v1/api-keys", json={"name": "u"}, headers=admin)
    ).json()["key"]
    async with websockets.connect(ws_url(live)) as ws:
        await ws.send(json.dumps({"type": "hello", "protocol": 1, "api_key": key}))
        assert await closed_with(ws) == 4403


async def test_assign_accept_result_and_stale_reports(live: LiveServer) -> None:
    agent, key = await agent_and_key(live, "raw")
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    async with websockets.connect(ws_url(live)) as ws:
        welcome = await hello(ws, key, concurrency=2)
        assert welcome["type"] == "welcome"
        assert welcome["agent_id"] == agent["id"]
        task = (await h.client.post("/api/v1/tasks", json={"type": "t"}, headers=dev)).json()
        assign = await next_frame(ws, "assign")
        assert assign["task_id"] == task["id"]
        assert assign["attempt"] == 1
        ids = {k: assign[k] for k in ("task_id", "attempt", "lease_token")}
        stale = {**ids, "lease_token": "not-the-token"}
        await ws.send(json.dumps({"type": "result", **stale, "output": {"x": 1}}))
        error = await next_frame(ws, "error")
        assert error["code"] == "stale_lease"
        await ws.send(json.dumps({"type": "accept", **ids}))
        await next_frame(ws, "ack")
        await ws.send(json.dumps({"type": "result", **ids, "output": {"x": 2}}))
        await next_frame(ws, "ack")
        again = {**ids}
        await ws.send(json.dumps({"type": "result", **again, "output": {"x": 3}}))
        late = await next_frame(ws, "error")
        assert late["code"] == "stale_lease"
        await ws.send(json.dumps({"type": "bogus"}))
        assert (await next_frame(ws, "error"))["code"] == "bad_frame"
    final = (await h.client.get(f"/api/v1/tasks/{task['id']}", headers=dev)).json()
    assert final["status"] == "SUCCEEDED"
    assert final["result"] == {"x": 2}


async def _frames(ws: Any, count: int, timeout: float = 10) -> tuple[list[dict[str, Any]], int]:
    """The next ``count`` frames, with `batch` messages unpacked in order, and how
    many messages carried them."""
    got: list[dict[str, Any]] = []
    messages = 0

    async def read() -> None:
        nonlocal messages
        while len(got) < count:
            message = json.loads(await ws.recv())
            messages += 1
            got.extend(message["frames"] if message["type"] == "batch" else [message])

    await asyncio.wait_for(read(), timeout)
    return got, messages


async def test_batch_frames_both_ways_when_the_worker_asks(live: LiveServer) -> None:
    """A worker that lists the `batch` feature may send several frames in one
    message and receives frames queued together in one message; the frames keep
    their order and meaning, and the reports in one batch share its arrival."""
    _, key = await agent_and_key(live, "batcher", max_concurrency=20)
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    async with websockets.connect(ws_url(live)) as ws:
        welcome = await hello(ws, key, concurrency=20, features=["batch"])
        assert "batch" in welcome["features"]
        resp = await h.client.post(
            "/api/v1/tasks/batch", json={"tasks": [{"type": "t"}] * 10}, headers=dev
        )
        assert resp.status_code == 201
        assigns, messages = await _frames(ws, 10)
        assert messages < 10  # assignments claimed together went out together
        assert sorted(a["task_id"] for a in assigns) == sorted(t["id"] for t in resp.json())
        reports: list[dict[str, Any]] = []
        for a in assigns:
            ids = {k: a[k] for k in ("task_id", "attempt", "lease_token")}
            reports += [{"type": "accept", **ids}, {"type": "result", **ids, "output": {"n": 1}}]
        stale = {**reports[1], "lease_token": "stale"}
        await ws.send(json.dumps({"type": "batch", "frames": [stale, *reports, {"type": "x"}]}))
        replies, _ = await _frames(ws, len(reports) + 2)
        kinds = [r["type"] for r in replies]
        assert kinds.count("ack") == len(reports)
        errors = {r.get("code") for r in replies if r["type"] == "error"}
        assert errors == {"stale_lease", "bad_frame"}
    finished = set()
    for task in resp.json():
        final = (await h.client.get(f"/api/v1/tasks/{task['id']}", headers=dev)).json()
        assert (final["status"], final["result"]) == ("SUCCEEDED", {"n": 1})
        assert final["started_at"] == final["finished_at"]  # both reports came in one batch
        finished.add(final["finished_at"])
    assert len(finished) == 1  # the reports of one batch are stamped with its arrival


async def test_one_tasks_reports_in_one_batch_apply_in_order(live: LiveServer) -> None:
    """accept, progress, result and a late duplicate result of one task in one
    message: the writer applies them in order on the task's row within one
    transaction, so the task ends SUCCEEDED with every change kept, one event
    per transition, and the duplicate refused."""
    _, key = await agent_and_key(live, "inorder", max_concurrency=2)
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=2, features=["batch"])
        task = (await h.client.post("/api/v1/tasks", json={"type": "t"}, headers=dev)).json()
        (assign,), _ = await _frames(ws, 1)
        ids = {k: assign[k] for k in ("task_id", "attempt", "lease_token")}
        frames = [
            {"type": "accept", **ids},
            {"type": "progress", **ids, "pct": 40, "message": "working"},
            {"type": "result", **ids, "output": {"done": True}},
            {"type": "result", **ids, "output": {"done": "twice"}},
        ]
        await ws.send(json.dumps({"type": "batch", "frames": frames}))
        replies, _ = await _frames(ws, 4)
    assert [r["type"] for r in replies] == ["ack", "ack", "ack", "error"]
    assert replies[3]["code"] == "stale_lease"
    final = (await h.client.get(f"/api/v1/tasks/{task['id']}", headers=dev)).json()
    assert final["status"] == "SUCCEEDED"
    assert final["result"] == {"done": True}
    assert final["progress"] == 100.0
    assert final["started_at"] is not None
    assert final["finished_at"] is not None
    assert final["started_at"] <= final["finished_at"]
    expected = sorted(["task.pending", "task.assigned", "task.running", "task.succeeded"])

    async def kinds() -> list[str] | None:
        items = (
            await h.client.get(
                "/api/v1/events", params={"resource_id": task["id"], "limit": 50}, headers=dev
            )
        ).json()["items"]
        got = sorted(e["type"] for e in items if e["resource_id"] == task["id"])
        return got if len(got) >= len(expected) else None

    assert await wait_until(kinds, timeout=10, what="the task's events") == expected


async def test_no_batch_frames_for_a_worker_that_did_not_ask(live: LiveServer) -> None:
    _, key = await agent_and_key(live, "plain", max_concurrency=20)
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=20)
        await h.client.post(
            "/api/v1/tasks/batch", json={"tasks": [{"type": "t"}] * 10}, headers=dev
        )
        for _ in range(10):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["type"] == "assign"


async def test_reconnect_within_the_lease_keeps_the_task(live: LiveServer) -> None:
    _, key = await agent_and_key(live, "comeback")
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key)
        task = (await h.client.post("/api/v1/tasks", json={"type": "t"}, headers=dev)).json()
        assign = await next_frame(ws, "assign")
        ids = {k: assign[k] for k in ("task_id", "attempt", "lease_token")}
        await ws.send(json.dumps({"type": "accept", **ids}))
        await next_frame(ws, "ack")
    # The connection dropped; the worker comes back with the task it still holds.
    async with websockets.connect(ws_url(live)) as ws:
        welcome = await hello(ws, key, held=[ids, {**ids, "task_id": "unknown"}])
        assert welcome["kept"] == [task["id"]]
        assert welcome["revoked"] == ["unknown"]
        await ws.send(json.dumps({"type": "result", **ids, "output": {"ok": True}}))
        await next_frame(ws, "ack")
    final = (await h.client.get(f"/api/v1/tasks/{task['id']}", headers=dev)).json()
    assert (final["status"], final["attempt"]) == ("SUCCEEDED", 1)


async def test_slow_reader_is_cut_off(live: LiveServer) -> None:
    """A worker that stops reading is sent no more than its slots' assignments
    and ``send_queue_size`` other frames; past that it is cut (4408)."""
    live.harness.state.settings.agents.send_queue_size = 10
    _, key = await agent_and_key(live, "sleepy", max_concurrency=500)
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    async with websockets.connect(ws_url(live), max_queue=1) as ws:
        await hello(ws, key, concurrency=500)
        conn = await wait_until(
            lambda: h.state.extras["hub"].connections(), timeout=5, what="registered"
        )
        # Stop reading; fill the socket buffers, then the bounded queue.
        stuck = _Stuck()
        conn[0].sink = stuck
        batch = [{"type": "t", "input": {"pad": "x" * 1000}} for _ in range(100)]
        resp = await h.client.post("/api/v1/tasks/batch", json={"tasks": batch}, headers=dev)
        assert resp.status_code == 201
        await wait_until(lambda: len(conn[0].held) == 100, timeout=10, what="all assigned")
        assert not conn[0].closed  # 100 assignments fit (one per slot)
        # Each bad frame is answered with an error frame the worker never reads.
        for _ in range(450):
            await ws.send(json.dumps({"type": "nonsense"}))
        await wait_until(lambda: conn[0].closed, timeout=10, what="slow connection closed")
    assert stuck.code == 4408


async def test_a_claim_may_fill_more_slots_than_the_send_queue_holds(live: LiveServer) -> None:
    """Assignments queue one per slot on top of ``send_queue_size``: a worker
    whose free slots one claim fills at once is not cut as a slow reader (one of
    1,024 slots was, by a claim of 1,024 tasks against a queue of 1,000)."""
    live.harness.state.settings.agents.send_queue_size = 10
    _, key = await agent_and_key(live, "wide", max_concurrency=60)
    dev = await live.harness.headers(Role.DEVELOPER)
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=60)
        conn = await wait_until(
            lambda: live.harness.state.extras["hub"].connections(), timeout=5, what="registered"
        )
        conn[0].sink = _Stuck()  # nothing drains the queue while the claim fills it
        batch = [{"type": "t"} for _ in range(60)]
        resp = await live.harness.client.post(
            "/api/v1/tasks/batch", json={"tasks": batch}, headers=dev
        )
        assert resp.status_code == 201
        await wait_until(lambda: len(conn[0].held) == 60, timeout=10, what="all assigned")
        assert not conn[0].closed


class _Stuck:
    """A socket whose peer never reads: sends block forever."""

    code: int | None = None

    async def send_text(self, data: str) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.code = code


async def test_a_cancel_from_another_replica_reaches_the_worker(live: LiveServer) -> None:
    """The replica that cancels a running task publishes the cancel when the
    worker is connected elsewhere; that replica's cancel loop delivers it. Here
    the message is published as the other replica would."""
    from ymera.tasks.endpoints import CANCEL_CHANNEL

    agent, key = await agent_and_key(live, "far-away")
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=2)
        task = (await h.client.post("/api/v1/tasks", json={"type": "t"}, headers=dev)).json()
        assign = await next_frame(ws, "assign")
        assert assign["task_id"] == task["id"]

        async def published() -> bool:
            # Until the loop's subscription is live (a cancel for another task
            # first would be ignored, so publish the real one until it lands).
            await h.state.bus.publish(
                CANCEL_CHANNEL,
                {
                    "task_id": task["id"],
                    "attempt": assign["attempt"],
                    "agent_id": agent["id"],
                    "reason": "stop it",
                },
            )
            conn = h.state.extras["hub"].get(agent["id"])
            return conn is not None and task["id"] not in conn.held

        await wait_until(published, timeout=10, interval=0.1, what="the cancel relayed")
        cancel = await next_frame(ws, "cancel")
        assert (cancel["task_id"], cancel["attempt"], cancel["reason"]) == (
            task["id"],
            assign["attempt"],
            "stop it",
        )

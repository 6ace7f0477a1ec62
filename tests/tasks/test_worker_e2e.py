"""Tasks through a real server and the worker SDK over a real WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer
from tests.fixtures.waiting import wait_until
from ymera.auth.permissions import Role
from ymera.worker import TaskContext, TaskFailed, Worker


async def make_agent(h: AppHarness, name: str, **kw: Any) -> tuple[dict[str, Any], str]:
    admin = await h.headers(Role.ADMIN)
    body = {"name": name, "type": "CUSTOM", "max_concurrency": 4, **kw}
    agent = (await h.client.post("/api/v1/agents", json=body, headers=admin)).json()
    key = await h.client.post(
        "/api/v1/api-keys", json={"name": name, "agent_id": agent["id"]}, headers=admin
    )
    return agent, key.json()["key"]


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    job = asyncio.create_task(worker.serve())
    try:
        await wait_until(worker.connected.is_set, timeout=10, what="worker to connect")
        yield worker
    finally:
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(job, 15)


async def wait_task(
    h: AppHarness, task_id: str, *statuses: str, timeout: float = 15
) -> dict[str, Any]:
    headers = await h.headers(Role.ADMIN)

    async def check() -> dict[str, Any] | None:
        body = (await h.client.get(f"/api/v1/tasks/{task_id}", headers=headers)).json()
        return dict(body) if body["status"] in statuses else None

    return dict(await wait_until(check, timeout=timeout, interval=0.05, what=f"task {statuses}"))


async def test_worker_runs_tasks_end_to_end(live: LiveServer) -> None:
    h = live.harness
    _, key = await make_agent(h, "echo-agent", capabilities=[{"name": "echo", "proficiency": 1}])
    worker = Worker(live.base_url, key, concurrency=4)
    seen: list[str] = []

    @worker.handler("echo")
    async def echo(ctx: TaskContext) -> dict[str, Any]:
        ctx.progress(50, "half way")
        ctx.stream("chunk-1")
        seen.append(ctx.task_id)
        return {"echo": ctx.input["text"], "attempt": ctx.attempt}

    @worker.handler("shout")
    def shout(ctx: TaskContext) -> str:  # a sync handler runs in a thread
        ctx.progress(10)
        return str(ctx.input["text"]).upper()

    headers = await h.headers(Role.DEVELOPER)
    async with running(worker):
        agent = (await h.client.get("/api/v1/agents", headers=headers)).json()["items"][0]
        assert agent["status"] == "IDLE"
        one = await h.client.post(
            "/api/v1/tasks",
            json={"type": "echo", "input": {"text": "hi"}, "required_capabilities": ["echo"]},
            headers=headers,
        )
        assert one.status_code == 201, one.text
        batch = await h.client.post(
            "/api/v1/tasks/batch",
            json={"tasks": [{"type": "shout", "input": {"text": f"t{i}"}} for i in range(20)]},
            headers=headers,
        )
        assert batch.status_code == 201, batch.text
        done = await wait_task(h, one.json()["id"], "SUCCEEDED")
        assert done["result"] == {"echo": "hi", "attempt": 1}
        assert done["agent_id"] == agent["id"]
        for item in batch.json():
            finished = await wait_task(h, item["id"], "SUCCEEDED")
            assert finished["result"] == {"value": item["input"]["text"].upper()}
        routing = await h.client.get(f"/api/v1/tasks/{one.json()['id']}/routing", headers=headers)
        assert routing.json()["decision"]["chosen"]["name"] == "echo-agent"
    assert seen == [one.json()["id"]]
    assert worker.completed == 21
    scored = await h.client.post(
        f"/api/v1/tasks/{one.json()['id']}/feedback", json={"score": 0.75}, headers=headers
    )
    assert scored.status_code == 200, scored.text
    metrics = await h.client.get(
        f"/api/v1/agents/{agent['id']}/metrics", params={"window": "1h"}, headers=headers
    )
    body = metrics.json()
    assert (body["successes"], body["failures"]) == (21, 0)
    assert body["quality_score"] == 0.75
    assert body["latency_p50_seconds"] is not None


async def test_failures_retry_then_dead_and_non_retryable_fail(live: LiveServer) -> None:
    h = live.harness
    _, key = await make_agent(h, "flaky")
    worker = Worker(live.base_url, key, concurrency=2)
    calls: dict[str, int] = {}

    @worker.handler("flaky")
    async def flaky(ctx: TaskContext) -> dict[str, Any]:
        calls[ctx.task_id] = calls.get(ctx.task_id, 0) + 1
        if ctx.input.get("fatal"):
            raise TaskFailed("bad input", retryable=False)
        if ctx.attempt < ctx.input["succeed_on"]:
            raise RuntimeError("transient")
        return {"ok": ctx.attempt}

    headers = await h.headers(Role.DEVELOPER)
    retry = {"max_attempts": 3, "initial": 0.01, "factor": 1, "cap": 0.01}
    async with running(worker):
        ok = await h.client.post(
            "/api/v1/tasks",
            json={"type": "flaky", "input": {"succeed_on": 3}, "retry": retry},
            headers=headers,
        )
        dead = await h.client.post(
            "/api/v1/tasks",
            json={"type": "flaky", "input": {"succeed_on": 9}, "retry": retry},
            headers=headers,
        )
        fatal = await h.client.post(
            "/api/v1/tasks",
            json={"type": "flaky", "input": {"fatal": True, "succeed_on": 1}, "retry": retry},
            headers=headers,
        )
        assert (await wait_task(h, ok.json()["id"], "SUCCEEDED"))["result"] == {"ok": 3}
        dead_task = await wait_task(h, dead.json()["id"], "DEAD")
        assert dead_task["attempt"] == 3
        assert "transient" in dead_task["error"]["message"]
        fatal_task = await wait_task(h, fatal.json()["id"], "FAILED")
        assert fatal_task["attempt"] == 1
        assert calls[fatal.json()["id"]] == 1

        redriven = await h.client.post(f"/api/v1/tasks/{dead.json()['id']}/retry", headers=headers)
        assert redriven.json()["status"] == "PENDING"
        again = await wait_task(h, dead.json()["id"], "DEAD")
        assert again["attempt"] == 6
    agent_id = again["agent_id"]
    metrics = await h.client.get(
        f"/api/v1/agents/{agent_id}/metrics", params={"window": "5m"}, headers=headers
    )
    # 3 attempts of `ok` (2 failed), 6 of `dead`, 1 of `fatal`: 1 success, 9 failures.
    assert (metrics.json()["successes"], metrics.json()["failures"]) == (1, 9)


async def test_cancel_reaches_the_running_handler(live: LiveServer) -> None:
    h = live.harness
    _, key = await make_agent(h, "slow")
    worker = Worker(live.base_url, key)
    started = asyncio.Event()
    stopped = asyncio.Event()

    @worker.handler("slow")
    async def slow(ctx: TaskContext) -> dict[str, Any]:
        started.set()
        while not ctx.is_cancelled():
            await asyncio.sleep(0.01)
        stopped.set()
        return {}

    headers = await h.headers(Role.DEVELOPER)
    async with running(worker):
        task = (await h.client.post("/api/v1/tasks", json={"type": "slow"}, headers=headers)).json()
        await asyncio.wait_for(started.wait(), 10)
        await wait_task(h, task["id"], "RUNNING")
        resp = await h.client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=headers)
        assert resp.json()["status"] == "CANCELLED"
        await asyncio.wait_for(stopped.wait(), 10)
        final = await wait_task(h, task["id"], "CANCELLED")
        assert final["result"] is None


@pytest.mark.parametrize("same_body", [True, False])
async def test_idempotency_key(harness: AppHarness, same_body: bool) -> None:
    headers = {**(await harness.headers(Role.DEVELOPER)), "Idempotency-Key": "k-1"}
    first = await harness.client.post("/api/v1/tasks", json={"type": "a"}, headers=headers)
    assert first.status_code == 201
    body = {"type": "a"} if same_body else {"type": "b"}
    second = await harness.client.post("/api/v1/tasks", json=body, headers=headers)
    if same_body:
        assert second.status_code == 200
        assert second.json()["id"] == first.json()["id"]
    else:
        assert second.status_code == 409
        assert second.json()["code"] == "idempotency_key_reused"

"""The blocking client against a real server, with a real worker running the tasks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fixtures.live import LiveServer
from tests.tasks.test_worker_e2e import make_agent, running
from ymera.auth.permissions import Role
from ymera.client import AuthenticationError, Client
from ymera.worker import TaskContext, TaskFailed, Worker


async def test_sync_client_submits_waits_and_scores(live: LiveServer) -> None:
    h = live.harness
    agent, agent_key = await make_agent(h, "sync-echo", capabilities=[{"name": "echo"}])
    admin = await h.headers(Role.ADMIN)
    key = (await h.client.post("/api/v1/api-keys", json={"name": "sdk"}, headers=admin)).json()
    worker = Worker(live.base_url, agent_key, concurrency=2)

    @worker.handler("echo")
    async def echo(ctx: TaskContext) -> dict[str, Any]:
        if ctx.input.get("fail"):
            raise TaskFailed("asked to fail", retryable=False)
        return {"echo": ctx.input["text"]}

    def scenario() -> dict[str, Any]:
        with Client(live.base_url, api_key=key["key"], timeout=10) as c:
            ok = c.submit_task("echo", {"text": "hello"}, required_capabilities=["echo"])
            done = c.wait_task(ok["id"], timeout=20, interval=0.05)
            bad = c.wait_task(c.submit_task("echo", {"fail": True})["id"], timeout=20)
            scored = c.task_feedback(ok["id"], 0.75, comment="good")
            return {
                "done": done,
                "bad": bad,
                "scored": scored,
                "metrics": c.agent_metrics(agent["id"], "5m"),
                "retried": c.retry_task(bad["id"]),
            }

    async with running(worker):
        seen = await asyncio.to_thread(scenario)
    assert seen["done"]["status"] == "SUCCEEDED"
    assert seen["done"]["result"] == {"echo": "hello"}
    assert seen["bad"]["status"] == "FAILED"
    assert seen["bad"]["error"]["message"] == "asked to fail"
    assert seen["scored"]["feedback_score"] == 0.75
    assert seen["metrics"]["successes"] == 1
    assert seen["metrics"]["failures"] == 1
    assert seen["metrics"]["quality_score"] == 0.75
    assert seen["retried"]["status"] == "PENDING"


async def test_sync_client_raises_typed_errors(live: LiveServer) -> None:
    def call() -> None:
        with Client(live.base_url, api_key="ymk_not-a-key") as c:
            c.list_agents()

    with pytest.raises(AuthenticationError) as err:
        await asyncio.to_thread(call)
    assert err.value.status == 401

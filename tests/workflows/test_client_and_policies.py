"""The client SDK's workflow methods (async and blocking), and the failure
policies with real workers: fail_fast cancels the rest, continue lets it finish."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer
from tests.fixtures.waiting import wait_until
from tests.workflows.helpers import (
    create_workflow,
    make_agent,
    run_steps,
    running,
    start_run,
    wait_run,
)
from ymera.auth.permissions import Role
from ymera.client import AsyncClient, Client, ConflictError, NotFoundError, ValidationError
from ymera.worker import TaskContext, TaskFailed, Worker

FLOW = {
    "name": "sdk-flow",
    "steps": [
        {"id": "a", "task_type": "work"},
        {"id": "b", "task_type": "work", "depends_on": ["a"]},
    ],
}

# The client only speaks HTTP: the API's tests cover both backends.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite-memory"], indirect=True)


@SQLITE_ONLY
async def test_async_client_workflow_methods(harness: AppHarness) -> None:
    token = await harness.token_for(Role.DEVELOPER)
    transport = httpx.ASGITransport(app=harness.app)
    async with AsyncClient("http://ymera.test", token=token, transport=transport) as c:
        with pytest.raises(ValidationError) as invalid:
            await c.validate_workflow(
                {"name": "x", "steps": [{"id": "a", "task_type": "t", "depends_on": ["q"]}]}
            )
        assert invalid.value.code == "invalid_workflow"
        assert invalid.value.body["problems"][0]["path"] == "steps[0].depends_on[0]"
        assert (await c.validate_workflow(FLOW)) == {"valid": True}
        created = await c.create_workflow(FLOW)
        assert (await c.get_workflow("sdk-flow"))["id"] == created["id"]
        assert [w["name"] for w in (await c.list_workflows(name="sdk-flow"))["items"]] == [
            "sdk-flow"
        ]
        run = await c.run_workflow("sdk-flow", {"x": 1})
        assert run["status"] == "RUNNING"
        assert (await c.get_workflow_run(run["id"]))["input"] == {"x": 1}
        listed = await c.list_workflow_runs(status="RUNNING", workflow="sdk-flow")
        assert [r["id"] for r in listed["items"]] == [run["id"]]
        with pytest.raises(TimeoutError, match="still RUNNING"):
            await c.wait_workflow_run(run["id"], timeout=0.1, interval=0.05)
        with pytest.raises(ConflictError):
            await c.retry_workflow_run(run["id"])
        cancelled = await c.cancel_workflow_run(run["id"], reason="changed my mind")
        assert cancelled["status"] == "CANCELLED"
        assert (await c.wait_workflow_run(run["id"], timeout=5))["status"] == "CANCELLED"
        with pytest.raises(NotFoundError):
            await c.get_workflow_run("missing")


@SQLITE_ONLY
async def test_blocking_client_runs_a_workflow(live: LiveServer) -> None:
    h = live.harness
    _, key = await make_agent(h, "sdk-worker")
    worker = Worker(live.base_url, key, concurrency=2)

    @worker.handler("work")
    async def work(ctx: TaskContext) -> dict[str, Any]:
        return {"n": ctx.input.get("n", 0) + 1}

    token = await h.token_for(Role.DEVELOPER)

    def scenario() -> dict[str, Any]:
        with Client(live.base_url, token=token, timeout=10) as c:
            c.create_workflow(
                {**FLOW, "steps": [FLOW["steps"][0], {**FLOW["steps"][1], "input": "${outputs.a}"}]}
            )
            run = c.run_workflow("sdk-flow", {"n": 1})
            return c.wait_workflow_run(run["id"], timeout=20, interval=0.05)

    async with running(worker):
        done = await asyncio.to_thread(scenario)
    assert done["status"] == "SUCCEEDED", done
    assert done["output"] == {"b": {"n": 3}}


def policy_flow(policy: str) -> dict[str, Any]:
    return {
        "name": f"policy-{policy}",
        "failure_policy": policy,
        "steps": [
            {
                "id": "seq",
                "strategy": "SEQUENTIAL",
                "steps": [
                    {"id": f"s{i}", "task_type": "job", "input": {"name": f"s{i}"}}
                    for i in (1, 2, 3)
                ],
            },
            {"id": "side", "task_type": "slow", "input": {"name": "side"}},
            {"id": "after", "depends_on": ["seq"], "task_type": "job", "input": {"name": "after"}},
        ],
    }


async def test_fail_fast_cancels_the_rest_and_continue_lets_it_finish(live: LiveServer) -> None:
    h = live.harness
    _, key = await make_agent(h, "policies")
    worker = Worker(live.base_url, key, concurrency=4)
    order: list[str] = []
    side_started = asyncio.Event()
    side_cancelled = asyncio.Event()
    release_side = asyncio.Event()

    @worker.handler("job")
    async def job(ctx: TaskContext) -> dict[str, Any]:
        name = ctx.input["name"]
        if name == "s2":
            await side_started.wait()  # fail only while the side step is running
            order.append(name)
            raise TaskFailed("s2 is broken", retryable=False)
        order.append(name)
        return {"name": name}

    @worker.handler("slow")
    async def slow(ctx: TaskContext) -> dict[str, Any]:
        side_started.set()
        while not (ctx.is_cancelled() or release_side.is_set()):
            await asyncio.sleep(0.01)
        if ctx.is_cancelled():
            side_cancelled.set()
        return {"side": "done"}

    await create_workflow(h, policy_flow("fail_fast"))
    await create_workflow(h, policy_flow("continue"))
    async with running(worker):
        fast = await wait_run(h, (await start_run(h, "policy-fail_fast", {}))["id"])
        await asyncio.wait_for(side_cancelled.wait(), 10)
        assert order == ["s1", "s2"]
        assert fast["status"] == "FAILED"
        assert fast["error"]["step"] == "s2"
        assert run_steps(fast) == {
            "seq": "FAILED",
            "s1": "SUCCEEDED",
            "s2": "FAILED",
            "s3": "SKIPPED",
            "side": "CANCELLED",
            "after": "SKIPPED",
        }

        order.clear()
        side_started.clear()
        run = await start_run(h, "policy-continue", {})
        await asyncio.wait_for(side_started.wait(), 10)

        async def s2_failed() -> bool:
            return run_steps(await wait_run(h, run["id"], "RUNNING"))["s2"] == "FAILED"

        await wait_until(s2_failed, timeout=10, what="s2 to fail while side runs")
        release_side.set()
        cont = await wait_run(h, run["id"])
    assert cont["status"] == "FAILED"
    assert run_steps(cont) == {
        "seq": "FAILED",
        "s1": "SUCCEEDED",
        "s2": "FAILED",
        "s3": "SKIPPED",
        "side": "SUCCEEDED",
        "after": "SKIPPED",
    }

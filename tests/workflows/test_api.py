"""`/api/v1/workflows` and `/api/v1/workflow-runs`: validation over HTTP,
versions, privacy, cancel, retry, fallbacks and the live SSE view of a run."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer
from tests.fixtures.sse import SSEReader
from tests.fixtures.waiting import wait_until
from tests.workflows.helpers import (
    create_workflow,
    get_run,
    make_agent,
    run_steps,
    running,
    start_run,
    wait_run,
)
from ymera.auth.permissions import Role
from ymera.worker import TaskContext, TaskFailed, Worker

# Validation is pure logic behind HTTP: one backend is enough.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite-memory"], indirect=True)


def step(id: str, **extra: Any) -> dict[str, Any]:
    return {"id": id, "task_type": "work", **extra}


@SQLITE_ONLY
async def test_invalid_definitions_are_422_naming_the_path(harness: AppHarness) -> None:
    h = harness
    dev = await h.headers(Role.DEVELOPER)
    bad = {
        "name": "bad",
        "steps": [
            step("a", depends_on=["b"]),
            step("b", depends_on=["a"], input={"x": "${outputs.ghost}"}),
        ],
    }
    resp = await h.client.post("/api/v1/workflows", json=bad, headers=dev)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["code"] == "invalid_workflow"
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert [p["path"] for p in body["problems"]] == ["steps[0].depends_on[0]", "steps[1].input"]
    assert body["detail"] == "steps[0].depends_on[0]: cycle: a -> b -> a (and 1 more)"
    assert body["problems"][1]["message"] == "unknown step 'ghost' (in outputs.ghost / steps.ghost)"
    again = await h.client.post("/api/v1/workflows/validate", json=bad, headers=dev)
    assert again.status_code == 422
    assert again.json()["problems"] == body["problems"]
    ok = await h.client.post(
        "/api/v1/workflows/validate", json={"name": "ok", "steps": [step("a")]}, headers=dev
    )
    assert ok.json() == {"valid": True}

    shape = await h.client.post(
        "/api/v1/workflows", json={"name": "x", "steps": [{"id": "a", "tsk": 1}]}, headers=dev
    )
    assert shape.status_code == 422
    assert shape.json()["code"] == "validation_error"

    garbage: Any = {"id": "g", "strategy": "SEQUENTIAL", "steps": []}
    for _ in range(300):
        garbage = {"id": "g", "strategy": "SEQUENTIAL", "steps": [garbage], "input": [[{"a": []}]]}
    deep = await h.client.post(
        "/api/v1/workflows", json={"name": "deep", "steps": [garbage]}, headers=dev
    )
    assert deep.status_code == 422, deep.text[:300]
    nested_input: Any = "x"
    for _ in range(200):
        nested_input = {"k": [nested_input]}
    deep_input = await h.client.post(
        "/api/v1/workflows",
        json={"name": "deep", "steps": [step("a", input=nested_input)]},
        headers=dev,
    )
    assert deep_input.status_code == 422, deep_input.text[:300]
    assert "nested deeper" in deep_input.json()["detail"]


async def test_versions_lookup_and_runs_by_name_or_id(harness: AppHarness) -> None:
    h = harness
    dev = await h.headers(Role.DEVELOPER)
    v1 = await create_workflow(h, {"name": "flow", "steps": [step("one")]})
    v2 = await create_workflow(h, {"name": "flow", "steps": [step("two")]})
    assert (v1["version"], v2["version"]) == (1, 2)
    by_name = (await h.client.get("/api/v1/workflows/flow", headers=dev)).json()
    assert by_name["id"] == v2["id"]
    by_id = (await h.client.get(f"/api/v1/workflows/{v1['id']}", headers=dev)).json()
    assert by_id["definition"]["steps"][0]["id"] == "one"
    listed = (await h.client.get("/api/v1/workflows?name=flow&limit=1", headers=dev)).json()
    assert [w["version"] for w in listed["items"]] == [2]
    assert listed["next_cursor"]
    missing = await h.client.get("/api/v1/workflows/nope", headers=dev)
    assert (missing.status_code, missing.json()["code"]) == (404, "workflow_not_found")

    latest = await start_run(h, "flow", {})
    pinned = await start_run(h, v1["id"], {})
    assert [s["key"] for s in latest["steps"]] == ["two"]
    assert [s["key"] for s in pinned["steps"]] == ["one"]
    assert pinned["workflow_version"] == 1
    assert latest["steps"][0]["status"] == "RUNNING"
    task = await h.client.get(f"/api/v1/tasks/{latest['steps'][0]['task_id']}", headers=dev)
    assert task.json()["workflow_step_id"] == latest["steps"][0]["id"]
    nothing = await h.client.post(
        "/api/v1/workflow-runs", json={"workflow": "ghost", "input": {}}, headers=dev
    )
    assert nothing.status_code == 404


async def test_runs_are_visible_to_their_creator_and_operators(harness: AppHarness) -> None:
    h = harness
    await create_workflow(h, {"name": "mine", "steps": [step("a")]})
    run = await start_run(h, "mine", {"secret": 1})
    await h.create_user("other", Role.DEVELOPER)
    other = {"Authorization": f"Bearer {(await h.login('other'))['access_token']}"}
    hidden = await h.client.get(f"/api/v1/workflow-runs/{run['id']}", headers=other)
    assert (hidden.status_code, hidden.json()["code"]) == (404, "workflow_run_not_found")
    assert (await h.client.get("/api/v1/workflow-runs", headers=other)).json()["items"] == []
    operator = await h.headers(Role.OPERATOR)
    seen = (await h.client.get("/api/v1/workflow-runs?status=RUNNING", headers=operator)).json()
    assert [r["id"] for r in seen["items"]] == [run["id"]]
    viewer = await h.headers(Role.VIEWER)
    denied = await h.client.post("/api/v1/workflow-runs", json={"workflow": "mine"}, headers=viewer)
    assert denied.status_code == 403


async def test_consensus_without_enough_agents_fails_at_once(harness: AppHarness) -> None:
    await create_workflow(
        harness,
        {
            "name": "lonely",
            "steps": [
                {
                    "id": "vote",
                    "strategy": "CONSENSUS",
                    "agents": 3,
                    "task": {"task_type": "judge", "agent": {"type": "REVIEWER"}},
                    "decide": {"method": "majority", "field": "verdict"},
                }
            ],
        },
    )
    await make_agent(harness, "only-one", type="REVIEWER")
    run = await start_run(harness, "lonely", {})
    assert run["status"] == "FAILED"
    assert run["error"]["type"] == "not_enough_agents"
    assert run_steps(run) == {
        "vote": "FAILED",
        "vote.1": "SKIPPED",
        "vote.2": "SKIPPED",
        "vote.3": "SKIPPED",
    }


async def test_cancel_a_run_cancels_its_running_tasks(live: LiveServer) -> None:
    h = live.harness
    _, key = await make_agent(h, "holder")
    worker = Worker(live.base_url, key, concurrency=4)
    started: set[str] = set()
    cancelled: set[str] = set()

    @worker.handler("hold")
    async def hold(ctx: TaskContext) -> Any:
        started.add(ctx.input["name"])
        while not ctx.is_cancelled():
            await asyncio.sleep(0.01)
        cancelled.add(ctx.input["name"])
        return {}

    await create_workflow(
        h,
        {
            "name": "long",
            "steps": [
                {
                    "id": "both",
                    "strategy": "PARALLEL",
                    "steps": [
                        {"id": n, "task_type": "hold", "input": {"name": n}} for n in ("x", "y")
                    ],
                },
                step("after", depends_on=["both"]),
            ],
        },
    )
    dev = await h.headers(Role.DEVELOPER)
    async with running(worker):
        run = await start_run(h, "long", {})
        await wait_until(lambda: started == {"x", "y"}, timeout=10, what="both tasks running")
        resp = await h.client.post(
            f"/api/v1/workflow-runs/{run['id']}/cancel?reason=not+needed", headers=dev
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        await wait_until(lambda: cancelled == {"x", "y"}, timeout=10, what="workers told")
    assert body["status"] == "CANCELLED"
    assert run_steps(body) == {
        "both": "CANCELLED",
        "x": "CANCELLED",
        "y": "CANCELLED",
        "after": "CANCELLED",
    }
    for s in body["steps"][1:3]:
        task = (await h.client.get(f"/api/v1/tasks/{s['task_id']}", headers=dev)).json()
        assert task["status"] == "CANCELLED"
    again = await h.client.post(f"/api/v1/workflow-runs/{run['id']}/cancel", headers=dev)
    assert (again.status_code, again.json()["code"]) == (409, "workflow_run_finished")


async def test_retry_a_failed_run_from_the_failed_step_and_fallbacks(live: LiveServer) -> None:
    h = live.harness
    _, key = await make_agent(h, "flaky")
    worker = Worker(live.base_url, key, concurrency=2)
    calls: dict[str, int] = {}
    broken = {"b": True}

    @worker.handler("work")
    async def work(ctx: TaskContext) -> Any:
        name = ctx.input["name"]
        calls[name] = calls.get(name, 0) + 1
        if broken.get(name):
            raise TaskFailed(f"{name} is broken", retryable=False)
        return {"done": name}

    @worker.handler("rescue")
    async def rescue(ctx: TaskContext) -> Any:
        return {"rescued": ctx.input["why"]}

    await create_workflow(
        h,
        {
            "name": "retryable",
            "steps": [
                step("a", input={"name": "a"}),
                step("b", depends_on=["a"], input={"name": "b"}),
                step(
                    "c",
                    depends_on=["b"],
                    input={"name": "c"},
                    on_failure={"task_type": "rescue", "input": {"why": "${error.message}"}},
                ),
            ],
        },
    )
    dev = await h.headers(Role.DEVELOPER)
    async with running(worker):
        run = await start_run(h, "retryable", {})
        failed = await wait_run(h, run["id"])
        assert failed["status"] == "FAILED", failed
        assert failed["error"]["step"] == "b"
        assert run_steps(failed) == {
            "a": "SUCCEEDED",
            "b": "FAILED",
            "c": "SKIPPED",
            "c.fallback": "SKIPPED",
        }
        nope = await h.client.post(f"/api/v1/workflow-runs/{run['id']}/cancel", headers=dev)
        assert nope.status_code == 409
        broken.update(b=False, c=True)
        resp = await h.client.post(f"/api/v1/workflow-runs/{run['id']}/retry", headers=dev)
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "RUNNING"
        done = await wait_run(h, run["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["retries"] == 1
    assert calls == {"a": 1, "b": 2, "c": 1}  # a kept its output; c failed, its fallback ran
    assert done["output"] == {"c": {"rescued": "c is broken"}}
    c = next(s for s in done["steps"] if s["key"] == "c")
    assert c["detail"]["recovered"] is True
    assert len(next(s for s in done["steps"] if s["key"] == "b")["tasks"]) == 2
    twice = await h.client.post(f"/api/v1/workflow-runs/{run['id']}/retry", headers=dev)
    assert (twice.status_code, twice.json()["code"]) == (409, "workflow_run_not_retryable")


async def test_sse_follows_a_run_and_resumes_after_last_event_id(live: LiveServer) -> None:
    h = live.harness
    _, key = await make_agent(h, "streamer")
    worker = Worker(live.base_url, key, concurrency=2)
    gate = asyncio.Event()

    @worker.handler("work")
    async def work(ctx: TaskContext) -> Any:
        await gate.wait()
        return {"ok": True}

    await create_workflow(h, {"name": "watched", "steps": [step("a"), step("b", depends_on=["a"])]})
    token = await h.token_for(Role.DEVELOPER)
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with running(worker), httpx.AsyncClient(base_url=live.base_url, timeout=30) as client:
        run = await start_run(h, "watched", {})
        url = f"/api/v1/workflow-runs/{run['id']}/events"
        async with (
            client.stream("GET", url, headers=headers) as response,
            SSEReader(response) as reader,
        ):
            await reader.wait_live()
            gate.set()
            await reader.wait(lambda: reader.ended, what="the stream to end with the run")
        events = reader.events
    kinds = [(e.event, e.json()["data"].get("step")) for e in events]
    assert kinds == [
        ("workflow_run.running", None),
        ("workflow_step.running", "a"),
        ("workflow_step.succeeded", "a"),
        ("workflow_step.running", "b"),
        ("workflow_step.succeeded", "b"),
        ("workflow_run.succeeded", None),
    ]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    # Resume after the third event: the rest, exactly once (the run is final: a replay).
    resumed = await h.client.get(
        f"/api/v1/workflow-runs/{run['id']}/events",
        headers={**headers, "Last-Event-ID": str(seqs[2])},
    )
    assert resumed.status_code == 200
    ids = [int(line[4:]) for line in resumed.text.splitlines() if line.startswith("id: ")]
    assert ids == seqs[3:]
    final = await get_run(h, run["id"])
    assert final["status"] == "SUCCEEDED"

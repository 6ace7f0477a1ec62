"""Experiences recorded from real task runs (in the transaction that ends the
task), the switch that turns it off, and the worker SDK's ``ctx.knowledge`` from
a real worker process."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.agents.test_worker_protocol import agent_and_key, hello, next_frame, ws_url
from tests.fixtures.live import LiveServer
from tests.fixtures.process import ProcessManager, async_wait_for, ymera_command
from ymera.auth.permissions import Role

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessManager]:
    with ProcessManager(tmp_path) as manager:
        yield manager


async def _run(live: LiveServer, key: str, tasks: list[tuple[dict[str, Any], bool]]) -> list[str]:
    """Submit each task and answer it over the worker protocol (success or failure)."""
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    ids = []
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=1, task_types=["build"])
        for task_input, ok in tasks:
            body = {"type": "build", "input": task_input, "retry": {"max_attempts": 1}}
            task = (await h.client.post("/api/v1/tasks", json=body, headers=dev)).json()
            ids.append(task["id"])
            frame = await next_frame(ws, "assign")
            ref = {k: frame[k] for k in ("task_id", "attempt", "lease_token")}
            if ok:
                out = {"type": "result", **ref, "output": {"artifact": "wheel built"}}
            else:
                err = {"message": "compiler crashed on generics", "retryable": False}
                out = {"type": "fail", **ref, "error": err}
            await ws.send(json.dumps(out))
            await next_frame(ws, "ack")
    return ids


async def test_finished_tasks_are_recorded_and_the_switch_turns_it_off(live: LiveServer) -> None:
    h = live.harness
    viewer = await h.headers(Role.VIEWER)
    agent, key = await agent_and_key(live, "builder", capabilities=[{"name": "py"}])
    ids = await _run(
        live,
        key,
        [({"package": "fastapi", "python": "3.11"}, True), ({"package": "pydantic"}, False)],
    )
    listed = (await h.client.get("/api/v1/knowledge", headers=viewer)).json()["items"]
    by_task = {e["task_id"]: e for e in listed}
    assert set(by_task) == set(ids)
    done, failed = by_task[ids[0]], by_task[ids[1]]
    assert (done["outcome"], done["source"], done["agent_id"]) == ("SUCCEEDED", "task", agent["id"])
    assert done["task_type"] == "build"
    assert "fastapi" in done["summary"]
    assert "3.11" in done["summary"]
    assert "wheel built" in done["notes"]
    assert failed["outcome"] == "FAILED"
    assert failed["notes"] == "compiler crashed on generics"
    # Recorded experiences are searchable at once (the text index is kept in step).
    hits = (
        await h.client.get("/api/v1/knowledge", params={"q": "compiler generics"}, headers=viewer)
    ).json()["items"]
    assert [e["id"] for e in hits] == [failed["id"]]
    by_agent = await h.client.get(
        "/api/v1/knowledge", params={"agent_id": agent["id"], "outcome": "FAILED"}, headers=viewer
    )
    assert [e["id"] for e in by_agent.json()["items"]] == [failed["id"]]

    h.settings.knowledge.record_tasks = False
    try:
        more = await _run(live, key, [({"package": "httpx"}, True)])
    finally:
        h.settings.knowledge.record_tasks = True
    dev = await h.headers(Role.DEVELOPER)
    task = (await h.client.get(f"/api/v1/tasks/{more[0]}", headers=dev)).json()
    assert task["status"] == "SUCCEEDED"
    after = (await h.client.get("/api/v1/knowledge", headers=viewer)).json()["items"]
    assert len(after) == 2


async def test_worker_reads_and_adds_knowledge(live: LiveServer, processes: ProcessManager) -> None:
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    seed = {
        "task_type": "consult",
        "summary": "upgrade the flux capacitor firmware",
        "notes": "power cycle first",
        "outcome": "SUCCEEDED",
    }
    seeded = (await h.client.post("/api/v1/knowledge", json=seed, headers=dev)).json()
    agent, key = await agent_and_key(live, "consultant", capabilities=[{"name": "py"}])
    worker = processes.start(
        "worker",
        ymera_command("worker", "run", "tests.knowledge.knowledge_worker:worker"),
        cwd=REPO_ROOT,
        env={"YMERA_URL": live.base_url, "YMERA_API_KEY": key},
    )
    body = {
        "type": "consult",
        "input": {"goal": "flux capacitor firmware", "q": "capacitor", "lesson": "it worked"},
    }
    task = (await h.client.post("/api/v1/tasks", json=body, headers=dev)).json()

    async def finished() -> dict[str, Any] | None:
        assert worker.alive(), worker.describe()
        got = (await h.client.get(f"/api/v1/tasks/{task['id']}", headers=dev)).json()
        return dict(got) if got["status"] in ("SUCCEEDED", "FAILED", "DEAD") else None

    done = await async_wait_for(finished, timeout=30, what="the consult task")
    assert done["status"] == "SUCCEEDED", (done, worker.tail())
    result = done["result"]
    assert result["similar"] == [seeded["id"]]
    assert result["found"] == [seeded["id"]]
    assert result["refused"] == 422
    added = result["added"]
    assert (added["source"], added["agent_id"], added["task_id"]) == (
        "agent",
        agent["id"],
        task["id"],
    )
    assert added["notes"] == "it worked"
    got = await h.client.get(f"/api/v1/knowledge/{added['id']}", headers=dev)
    assert got.json()["created_by"].startswith("key:")
    # Stop the worker while this event loop (the server's) still runs, so it can
    # say goodbye; the fixture's blocking wait would stall the server meanwhile.
    worker.send_signal(signal.SIGTERM)

    async def exited() -> bool:
        return not worker.alive()

    await async_wait_for(exited, timeout=15, what="the worker to exit")

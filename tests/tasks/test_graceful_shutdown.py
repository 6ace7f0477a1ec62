"""Shutdown in-process: once the app's draining event is set, intake stops (503
`shutting_down` on /readyz and task submissions), nothing new is claimed, and
pushes to http agents still unfinished at the deadline are handed back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import AppHarness
from tests.fixtures.backends import Backend
from tests.fixtures.live import serve_loopback
from tests.fixtures.waiting import wait_until
from ymera.app import shutdown_reserve
from ymera.auth.permissions import Role
from ymera.config import Settings
from ymera.middleware import drain_signal

GRACE = 1.0


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings(server={"graceful_shutdown_seconds": GRACE})


@dataclass
class HoldingAgent:
    """An http agent on loopback that holds each task until its gate opens."""

    url: str
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[str] = field(default_factory=list)  # task ids
    disconnected: list[str] = field(default_factory=list)  # the pusher gave up waiting


@pytest.fixture
async def holding_agent() -> AsyncIterator[HoldingAgent]:
    agent = HoldingAgent(url="")

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def tasks(request: Request) -> JSONResponse:
        payload = await request.json()
        agent.received.append(payload["task_id"])
        while not agent.gate.is_set():
            if await request.is_disconnected():
                agent.disconnected.append(payload["task_id"])
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(agent.gate.wait(), 0.05)
        return JSONResponse({"output": {"done": payload["task_id"]}})

    app = Starlette(routes=[Route("/health", health), Route("/tasks", tasks, methods=["POST"])])
    async with serve_loopback(app) as url:
        agent.url = url
        try:
            yield agent
        finally:
            agent.gate.set()  # let held requests end before the server stops


async def _http_agent(h: AppHarness, url: str) -> dict[str, Any]:
    admin = await h.headers(Role.ADMIN)
    body = {"name": "holder", "connection_mode": "http", "endpoint_url": url, "max_concurrency": 4}
    resp = await h.client.post("/api/v1/agents", json=body, headers=admin)
    assert resp.status_code == 201, resp.text
    agent = resp.json()
    beat = await h.client.post(f"/api/v1/agents/{agent['id']}/heartbeat", headers=admin)
    assert beat.json()["status"] == "IDLE", beat.text
    return dict(agent)


async def _submit(h: AppHarness, **body: Any) -> dict[str, Any]:
    resp = await h.client.post(
        "/api/v1/tasks", json={"type": "push", **body}, headers=await h.headers(Role.DEVELOPER)
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _task(h: AppHarness, task_id: str) -> dict[str, Any]:
    resp = await h.client.get(f"/api/v1/tasks/{task_id}", headers=await h.headers(Role.ADMIN))
    return dict(resp.json())


def _assert_shutting_down(resp: Any) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.headers["retry-after"] == "2"
    body = resp.json()
    assert body["code"] == "shutting_down", body
    assert body["retry_after"] == 2


async def test_intake_stops_when_shutdown_begins(harness: AppHarness) -> None:
    client = harness.client
    dev = await harness.headers(Role.DEVELOPER)
    assert (await client.get("/readyz")).status_code == 200
    before = await _submit(harness, input={"n": 1})

    drain_signal(harness.app).set()

    _assert_shutting_down(await client.get("/readyz"))
    _assert_shutting_down(await client.post("/api/v1/tasks", json={"type": "x"}, headers=dev))
    batch = {"tasks": [{"type": "x"}, {"type": "y"}]}
    _assert_shutting_down(await client.post("/api/v1/tasks/batch", json=batch, headers=dev))
    # Refused before authentication: nothing about the caller is needed to say "not here".
    _assert_shutting_down(await client.post("/api/v1/tasks", json={"type": "x"}))
    # Everything else keeps working until the server stops.
    listed = await client.get("/api/v1/tasks", headers=dev)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()["items"]] == [before["id"]]
    assert (await client.get("/healthz")).status_code == 200


async def test_openapi_documents_the_503_on_submit(harness: AppHarness) -> None:
    paths = (await harness.client.get("/openapi.json")).json()["paths"]
    for path in ("/api/v1/tasks", "/api/v1/tasks/batch"):
        assert "503" in paths[path]["post"]["responses"], path
    assert "503" not in paths["/api/v1/tasks"]["get"]["responses"]


async def test_unfinished_push_is_handed_back_at_the_deadline(
    harness: AppHarness, holding_agent: HoldingAgent
) -> None:
    """A push still waiting for its agent when the grace period is nearly over is
    stopped and its task re-queued at once, the attempt not counted; claims stop
    as soon as shutdown begins."""
    agent = await _http_agent(harness, holding_agent.url)
    task = await _submit(harness, input={"q": 1}, retry={"max_attempts": 1})
    await wait_until(
        lambda: holding_agent.received == [task["id"]], timeout=10, what="the push to arrive"
    )
    held = await _task(harness, task["id"])
    assert (held["status"], held["attempt"], held["agent_id"]) == ("ASSIGNED", 1, agent["id"])

    began = time.monotonic()
    drain_signal(harness.app).set()

    async def handed_back() -> dict[str, Any] | None:
        current = await _task(harness, task["id"])
        return current if current["status"] != "ASSIGNED" else None

    back = await wait_until(handed_back, timeout=GRACE + 5, what="the task to be handed back")
    waited = time.monotonic() - began
    assert back["status"] == "PENDING", back
    assert back["attempt"] == 1
    assert back["max_attempts"] == 2  # the hand-back is not a failed attempt
    assert back["error"] == {"message": "server shutting down", "type": "released"}
    # The push had the grace period but its reserve to finish.
    assert GRACE - shutdown_reserve(GRACE) <= waited < GRACE + 1, waited
    await wait_until(
        lambda: holding_agent.disconnected == [task["id"]],
        timeout=5,
        what="the agent to see the push stopped",
    )
    agent_now = (
        await harness.client.get(
            f"/api/v1/agents/{agent['id']}", headers=await harness.headers(Role.ADMIN)
        )
    ).json()
    assert agent_now["current_load"] == 0, agent_now
    # Draining: the task is available and the agent idle, yet nothing claims it.
    state = harness.state
    assert await state.extras["pusher"].dispatch_once() == 0
    assert await state.extras["dispatcher"].dispatch_once() == 0
    assert (await _task(harness, task["id"]))["status"] == "PENDING"
    assert holding_agent.received == [task["id"]]


async def test_push_that_finishes_within_the_grace_period_completes(
    harness: AppHarness, holding_agent: HoldingAgent
) -> None:
    await _http_agent(harness, holding_agent.url)
    task = await _submit(harness, input={"q": 2})
    await wait_until(
        lambda: holding_agent.received == [task["id"]], timeout=10, what="the push to arrive"
    )
    drain_signal(harness.app).set()
    holding_agent.gate.set()

    async def finished() -> dict[str, Any] | None:
        current = await _task(harness, task["id"])
        return current if current["status"] not in ("ASSIGNED", "RUNNING") else None

    done = await wait_until(finished, timeout=GRACE + 5, what="the push to finish")
    assert done["status"] == "SUCCEEDED", done
    assert done["result"] == {"done": task["id"]}
    assert holding_agent.disconnected == []

"""HTTP push agents against a real HTTP agent server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fixtures.live import LiveServer, serve_loopback
from tests.fixtures.waiting import wait_until
from ymera.auth.permissions import Role


@dataclass
class AgentServer:
    url: str
    mode: str = "sync"
    received: list[dict[str, Any]] = field(default_factory=list)
    cancels: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def agent_server() -> AsyncIterator[AgentServer]:
    server_state = AgentServer(url="")

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def tasks(request: Request) -> JSONResponse:
        payload = await request.json()
        server_state.received.append(payload)
        mode = server_state.mode
        if mode == "sync":
            return JSONResponse({"output": {"echo": payload["input"]}})
        if mode == "async":
            return JSONResponse({"accepted": True}, status_code=202)
        if mode == "reject":
            return JSONResponse({"error": "bad input"}, status_code=400)
        return JSONResponse({"error": "boom"}, status_code=500)

    async def cancel(request: Request) -> JSONResponse:
        server_state.cancels.append(
            {"path_task_id": request.path_params["task_id"], **(await request.json())}
        )
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/tasks", tasks, methods=["POST"]),
            Route("/tasks/{task_id}/cancel", cancel, methods=["POST"]),
        ]
    )
    async with serve_loopback(app) as url:
        server_state.url = url
        yield server_state


async def http_agent(live: LiveServer, url: str, name: str = "pusher") -> dict[str, Any]:
    h = live.harness
    settings = h.state.settings
    settings.push.retries = 1
    settings.push.retry_initial = 0.01
    settings.push.breaker_failures = 2
    settings.push.breaker_open_seconds = 0.5
    admin = await h.headers(Role.ADMIN)
    body = {"name": name, "connection_mode": "http", "endpoint_url": url, "max_concurrency": 4}
    agent = (await h.client.post("/api/v1/agents", json=body, headers=admin)).json()
    beat = await h.client.post(f"/api/v1/agents/{agent['id']}/heartbeat", headers=admin)
    assert beat.json()["status"] == "IDLE"
    return dict(agent)


async def task_in(live: LiveServer, task_id: str, *statuses: str) -> dict[str, Any]:
    h = live.harness
    headers = await h.headers(Role.ADMIN)

    async def check() -> dict[str, Any] | None:
        body = (await h.client.get(f"/api/v1/tasks/{task_id}", headers=headers)).json()
        return dict(body) if body["status"] in statuses else None

    return dict(await wait_until(check, timeout=15, interval=0.05, what=str(statuses)))


async def submit(live: LiveServer, **body: Any) -> dict[str, Any]:
    h = live.harness
    resp = await h.client.post(
        "/api/v1/tasks", json={"type": "push", **body}, headers=await h.headers(Role.DEVELOPER)
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def test_sync_result(live: LiveServer, agent_server: AgentServer) -> None:
    agent = await http_agent(live, agent_server.url)
    task = await submit(live, input={"q": 1})
    done = await task_in(live, task["id"], "SUCCEEDED")
    assert done["result"] == {"echo": {"q": 1}}
    assert done["agent_id"] == agent["id"]
    (payload,) = agent_server.received
    assert (payload["task_id"], payload["attempt"]) == (task["id"], 1)
    assert payload["callback_token"].startswith("ycb_")


async def test_async_accept_then_single_use_callback(
    live: LiveServer, agent_server: AgentServer
) -> None:
    agent_server.mode = "async"
    await http_agent(live, agent_server.url)
    task = await submit(live, input={"q": 2})
    await task_in(live, task["id"], "RUNNING")
    payload = agent_server.received[0]
    client = live.harness.client
    url = f"/api/v1/tasks/{task['id']}/callback"
    forged = await client.post(
        url,
        json={"attempt": 1, "status": "succeeded"},
        headers={"Authorization": "Bearer ycb_" + "0" * 64},
    )
    assert forged.status_code == 401
    auth = {"Authorization": f"Bearer {payload['callback_token']}"}
    ok = await client.post(
        url, json={"attempt": 1, "status": "succeeded", "output": {"late": True}}, headers=auth
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["result"] == {"late": True}
    again = await client.post(url, json={"attempt": 1, "status": "failed"}, headers=auth)
    assert again.status_code == 401
    assert again.json()["code"] == "invalid_callback_token"


async def test_rejected_task_fails_without_retry(
    live: LiveServer, agent_server: AgentServer
) -> None:
    agent_server.mode = "reject"
    await http_agent(live, agent_server.url)
    task = await submit(live)
    failed = await task_in(live, task["id"], "FAILED")
    assert "400" in failed["error"]["message"]
    assert len(agent_server.received) == 1


async def test_breaker_opens_and_recovers_through_half_open(
    live: LiveServer, agent_server: AgentServer
) -> None:
    agent_server.mode = "fail"
    agent = await http_agent(live, agent_server.url)
    h = live.harness
    admin = await h.headers(Role.ADMIN)
    retry = {"max_attempts": 10, "initial": 0.01, "factor": 1, "cap": 0.01}
    task = await submit(live, retry=retry)

    async def status() -> tuple[str, str]:
        body = (await h.client.get(f"/api/v1/agents/{agent['id']}", headers=admin)).json()
        return str(body["status"]), str(body["status_reason"])

    got = await wait_until(lambda: _is(status(), "ERROR"), timeout=15, what="circuit to open")
    assert got
    opened = await h.client.get(
        "/api/v1/events", params={"type": "agent.circuit_opened"}, headers=admin
    )
    await wait_until(
        lambda: _events(h, "agent.circuit_opened", admin), timeout=5, what="open event"
    )
    assert opened.status_code == 200
    # A delivery that was still retrying when the circuit opened may post once
    # more: count once nothing is in flight.
    pusher = h.state.extras["pusher"]
    await wait_until(lambda: not pusher.inflight, timeout=10, what="deliveries to settle")
    deliveries_when_open = len(agent_server.received)
    metrics = await h.client.get(f"/api/v1/agents/{agent['id']}/metrics", headers=admin)
    circuit = metrics.json()["circuit"]
    assert circuit["state"] in ("open", "half_open")
    assert circuit["consecutive_failures"] >= 2
    prom = await h.client.get("/metrics")
    assert 'ymera_push_deliveries_total{outcome="failed"}' in prom.text
    agent_server.mode = "sync"
    done = await task_in(live, task["id"], "SUCCEEDED")
    assert done["attempt"] > 2
    assert len(agent_server.received) == deliveries_when_open + 1  # one half-open probe
    await wait_until(lambda: _is(status(), "IDLE"), timeout=10, what="circuit to close")
    await wait_until(
        lambda: _events(h, "agent.circuit_closed", admin), timeout=5, what="closed event"
    )
    closed = await h.client.get(f"/api/v1/agents/{agent['id']}/metrics", headers=admin)
    assert closed.json()["circuit"]["state"] == "closed"


async def _is(coro: Any, expected: str) -> bool:
    status, _ = await coro
    return bool(status == expected)


async def _events(h: Any, kind: str, headers: dict[str, str]) -> bool:
    resp = await h.client.get("/api/v1/events", params={"type": kind}, headers=headers)
    return bool(resp.json()["items"])


async def test_cancel_is_sent_to_the_http_agent(
    live: LiveServer, agent_server: AgentServer
) -> None:
    """A task an http agent accepted (202) and is running gets a cancel POST when
    it is cancelled; its later callback is refused."""
    agent_server.mode = "async"
    await http_agent(live, agent_server.url, name="cancellable")
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    task = (await h.client.post("/api/v1/tasks", json={"type": "t"}, headers=dev)).json()
    await wait_until(lambda: agent_server.received, timeout=10, what="the push")
    delivered = agent_server.received[0]
    await task_in(live, task["id"], "ASSIGNED", "RUNNING")

    resp = await h.client.post(
        f"/api/v1/tasks/{task['id']}/cancel", params={"reason": "not needed"}, headers=dev
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "CANCELLED"
    await wait_until(lambda: agent_server.cancels, timeout=10, what="the cancel POST")
    assert agent_server.cancels == [
        {
            "path_task_id": task["id"],
            "task_id": task["id"],
            "attempt": delivered["attempt"],
            "reason": "not needed",
        }
    ]
    late = await h.client.post(
        f"/api/v1/tasks/{task['id']}/callback",
        json={"attempt": delivered["attempt"], "status": "succeeded", "output": {}},
        headers={"Authorization": f"Bearer {delivered['callback_token']}"},
    )
    assert late.status_code == 401, late.text
    assert late.json()["code"] == "invalid_callback_token"

"""Active health checks and outlier ejection against a real HTTP agent on loopback.

The agent is a small Starlette app served by uvicorn on a port the OS picked;
its /health (and A2A agent card) can be switched between healthy and failing.
Probes are driven one pass at a time with ``probe_once`` and time is moved with
a FrozenClock, so nothing waits on a timer.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.conftest import AppHarness
from tests.fixtures.backends import Backend
from ymera.agents import service as agents_service
from ymera.agents.health_checks import EJECTION_REASON, Verdict
from ymera.agents.schemas import AgentCreate, AgentUpdate
from ymera.app import create_app
from ymera.auth.permissions import Permission, Role
from ymera.auth.principal import Principal
from ymera.kit.clock import FrozenClock
from ymera.models.agent_metrics import AgentHealth
from ymera.models.agents import Agent
from ymera.models.events import Event
from ymera.runtime.agent_probe import ProbeOutcome, probe_once
from ymera.runtime.loops import DEFAULT_LOOPS

SYSTEM = Principal(kind="system", user_id="", role="admin", permissions=frozenset(Permission))
POLICY = {
    "health_check_interval": 10.0,
    "health_check_timeout": 2.0,  # generous: a loaded CI machine must not time out a good probe
    "ejection_consecutive_failures": 3,
    "ejection_base_seconds": 30.0,
    "ejection_max_seconds": 300.0,
}


# --- a real HTTP agent on loopback ---------------------------------------------------------


@dataclass
class FakeAgent:
    """What the agent answers; the test flips it."""

    health_status: int = 200
    card: Any = field(default_factory=lambda: {"name": "remote", "skills": []})
    hang: bool = False
    hits: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def health(self, request: Request) -> Response:
        self.hits += 1
        if self.hang:
            await self.release.wait()
        return PlainTextResponse("ok" if self.health_status < 400 else "bad", self.health_status)

    async def agent_card(self, request: Request) -> Response:
        self.hits += 1
        if isinstance(self.card, str):
            return PlainTextResponse(self.card)
        return JSONResponse(self.card)


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def remote() -> AsyncIterator[FakeAgent]:
    fake = FakeAgent()
    app = Starlette(
        routes=[
            Route("/health", fake.health),
            Route("/.well-known/agent-card.json", fake.agent_card),
        ]
    )
    sock = _listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done(), "the agent server did not start"
        assert time.monotonic() < deadline, "the agent server did not start within 10 s"
        await asyncio.sleep(0.01)
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        fake.release.set()
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def dead_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the YMERA app, with a frozen clock and no background probing ------------------------


def _start() -> datetime:
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(seconds=1)


@pytest.fixture
async def ymera(backend: Backend) -> AsyncIterator[AppHarness]:
    settings = backend.settings(agents=POLICY)
    app = create_app(settings, clock=FrozenClock(_start()), loops=DEFAULT_LOOPS)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ymera.test") as client:
            yield AppHarness(app, client, settings)


def clock(h: AppHarness) -> FrozenClock:
    c: FrozenClock = h.state.clock
    return c


async def register(h: AppHarness, name: str, url: str, mode: str = "http", **kw: Any) -> str:
    async with h.state.db.transaction() as session:
        agent = await agents_service.create_agent(
            session,
            principal=SYSTEM,
            data=AgentCreate(name=name, connection_mode=mode, endpoint_url=url, **kw),
            now=h.state.clock.now(),
        )
        return agent.id


async def set_endpoint(h: AppHarness, agent_id: str, url: str) -> None:
    async with h.state.db.transaction() as session:
        await agents_service.update_agent(
            session,
            principal=SYSTEM,
            agent_id=agent_id,
            data=AgentUpdate(endpoint_url=url),
            now=h.state.clock.now(),
        )


async def agent_row(h: AppHarness, agent_id: str) -> Agent:
    async with h.state.db.transaction(readonly=True) as session:
        return await agents_service.get_agent(session, agent_id=agent_id)


async def health_row(h: AppHarness, agent_id: str) -> AgentHealth:
    async with h.state.db.transaction(readonly=True) as session:
        row = await session.get(AgentHealth, agent_id)
    assert row is not None
    return row


async def events(h: AppHarness, agent_id: str, *types: str) -> list[Event]:
    async with h.state.db.transaction(readonly=True) as session:
        rows = await session.execute(
            select(Event)
            .where(Event.resource_id == agent_id, Event.type.in_(types))
            .order_by(Event.seq)
        )
        return list(rows.scalars())


async def probe(h: AppHarness) -> dict[str, ProbeOutcome]:
    return {o.agent_id: o for o in await probe_once(h.state)}


async def fail_until_ejected(h: AppHarness, agent_id: str, failures: int = 3) -> None:
    for n in range(1, failures + 1):
        outcome = (await probe(h))[agent_id]
        assert not outcome.ok
        expected = Verdict.EJECTED if n == failures else Verdict.NONE
        assert outcome.verdict == expected, f"probe {n}: {outcome}"
        if n < failures:
            assert (await health_row(h, agent_id)).consecutive_failures == n
            clock(h).advance(POLICY["health_check_interval"])


# --- tests ---------------------------------------------------------------------------------


async def test_probe_brings_agent_online_then_failures_eject_and_success_readmits(
    ymera: AppHarness, remote: FakeAgent
) -> None:
    h = ymera
    agent_id = await register(h, "web-agent", remote.url, max_concurrency=2)
    assert (await agent_row(h, agent_id)).status == "OFFLINE"

    # A first successful probe is a heartbeat: OFFLINE -> IDLE.
    outcome = (await probe(h))[agent_id]
    assert (outcome.ok, outcome.verdict) == (True, Verdict.NONE)
    agent = await agent_row(h, agent_id)
    assert agent.status == "IDLE"
    assert agent.last_heartbeat_at == clock(h).now()
    assert remote.hits == 1
    # Not due again before the interval.
    assert await probe(h) == {}
    assert remote.hits == 1

    remote.health_status = 500
    clock(h).advance(10)
    await fail_until_ejected(h, agent_id)
    ejected_at = clock(h).now()
    agent = await agent_row(h, agent_id)
    assert agent.status == "ERROR"
    assert agent.status_reason is not None
    assert agent.status_reason.startswith(EJECTION_REASON)
    assert "HTTP 500" in agent.status_reason
    health = await health_row(h, agent_id)
    assert health.times_ejected == 1
    assert health.ejected_until == ejected_at + timedelta(seconds=30)
    assert health.last_probe_ok is False
    [ejected] = await events(h, agent_id, "agent.ejected")
    assert ejected.data["times_ejected"] == 1
    assert ejected.data["seconds"] == 30
    assert "HTTP 500" in ejected.data["error"]

    # Still probed while ejected (for liveness), but even a healthy answer does not
    # cut the ejection short.
    remote.health_status = 200
    for _ in range(2):
        clock(h).advance(10)
        outcome = (await probe(h))[agent_id]
        assert (outcome.ok, outcome.verdict) == (True, Verdict.NONE)
        assert (await agent_row(h, agent_id)).status == "ERROR"
    assert (await health_row(h, agent_id)).next_probe_at == ejected_at + timedelta(seconds=30)
    clock(h).advance(9)
    assert await probe(h) == {}

    # The ejection runs out: that probe decides, and it passes.
    clock(h).advance(1)
    outcome = (await probe(h))[agent_id]
    assert (outcome.ok, outcome.verdict) == (True, Verdict.READMITTED)
    agent = await agent_row(h, agent_id)
    assert agent.status == "IDLE"
    assert agent.status_reason == "re-admitted: health check passed"
    health = await health_row(h, agent_id)
    assert (health.consecutive_failures, health.ejected_until) == (0, None)
    assert len(await events(h, agent_id, "agent.readmitted")) == 1
    changes = [
        (e.data["from"], e.data["to"]) for e in await events(h, agent_id, "agent.status_changed")
    ]
    assert changes == [("OFFLINE", "IDLE"), ("IDLE", "ERROR"), ("ERROR", "IDLE")]

    # Operators see the health state in the metrics response.
    resp = await h.client.get(
        f"/api/v1/agents/{agent_id}/metrics", headers=await h.headers(Role.VIEWER)
    )
    assert resp.status_code == 200, resp.text
    shown = resp.json()["health"]
    assert shown["ejected"] is False
    assert shown["times_ejected"] == 1
    assert shown["last_probe_ok"] is True
    assert shown["consecutive_failures"] == 0


async def test_failed_probe_after_ejection_ejects_again_for_longer(
    ymera: AppHarness, remote: FakeAgent
) -> None:
    h = ymera
    agent_id = await register(h, "flaky", remote.url)
    await probe(h)
    remote.health_status = 503
    clock(h).advance(10)
    await fail_until_ejected(h, agent_id)

    clock(h).advance(30)
    outcome = (await probe(h))[agent_id]  # one failed probe is enough now
    assert outcome.verdict == Verdict.EJECTED
    health = await health_row(h, agent_id)
    assert health.times_ejected == 2
    assert health.ejected_until == clock(h).now() + timedelta(seconds=60)
    agent = await agent_row(h, agent_id)
    assert agent.status == "ERROR"
    assert agent.status_reason is not None
    assert agent.status_reason.startswith(EJECTION_REASON)
    seconds = [e.data["seconds"] for e in await events(h, agent_id, "agent.ejected")]
    assert seconds == [30, 60]

    # Shown as ejected while it lasts.
    resp = await h.client.get(
        f"/api/v1/agents/{agent_id}/metrics", headers=await h.headers(Role.VIEWER)
    )
    assert resp.json()["health"]["ejected"] is True

    remote.health_status = 200
    clock(h).advance(60)
    assert (await probe(h))[agent_id].verdict == Verdict.READMITTED
    assert (await agent_row(h, agent_id)).status == "IDLE"


async def test_unreachable_port_wrong_path_and_timeout_count_as_failures(
    ymera: AppHarness, remote: FakeAgent
) -> None:
    h = ymera
    gone = await register(h, "gone", remote.url)
    await probe(h)
    assert (await agent_row(h, gone)).status == "IDLE"
    await set_endpoint(h, gone, dead_url())
    wrong_path = await register(h, "wrong-path", remote.url + "/nowhere")
    never = await register(h, "never-up", dead_url())
    clock(h).advance(10)
    outcomes = await probe(h)
    for agent_id in (gone, never):
        assert outcomes[agent_id].error is not None
        assert "ConnectError" in outcomes[agent_id].error
    assert outcomes[wrong_path].error is not None
    assert "HTTP 404" in outcomes[wrong_path].error
    for _ in range(2):
        clock(h).advance(10)
        await probe(h)
    for agent_id in (gone, wrong_path, never):
        assert (await health_row(h, agent_id)).times_ejected == 1
        assert len(await events(h, agent_id, "agent.ejected")) == 1
    # Reachable but failing is ERROR; never reachable stays OFFLINE.
    assert (await agent_row(h, gone)).status == "ERROR"
    assert (await agent_row(h, wrong_path)).status == "ERROR"
    assert (await agent_row(h, never)).status == "OFFLINE"

    # Silent past the heartbeat timeout, the unreachable one goes OFFLINE (the agent
    # that answers 404 is not silent and stays ERROR); it is re-admitted from there
    # once it answers again after its ejection.
    clock(h).advance(10)
    await probe(h)
    async with h.state.db.transaction() as session:
        silent = await agents_service.mark_silent_offline(
            session, now=clock(h).now(), heartbeat_timeout=h.settings.agents.heartbeat_timeout
        )
    assert [a.id for a in silent] == [gone]
    assert (await agent_row(h, wrong_path)).status == "ERROR"
    await set_endpoint(h, gone, remote.url)
    clock(h).advance(20)
    outcomes = await probe(h)
    assert outcomes[gone].verdict == Verdict.READMITTED
    assert (await agent_row(h, gone)).status == "IDLE"

    # A probe that hangs past the timeout fails, and quickly.
    hanging = await register(h, "hanging", remote.url)
    remote.hang = True
    started = time.monotonic()
    outcome = (await probe(h))[hanging]
    assert time.monotonic() - started < 5
    assert not outcome.ok
    assert outcome.error == "no answer within 2 s"
    assert (await health_row(h, hanging)).consecutive_failures == 1


async def test_a2a_agent_is_healthy_when_its_agent_card_is_json(
    ymera: AppHarness, remote: FakeAgent
) -> None:
    h = ymera
    agent_id = await register(h, "a2a-agent", remote.url, mode="a2a")
    outcome = (await probe(h))[agent_id]
    assert outcome.ok, outcome.error
    assert (await agent_row(h, agent_id)).status == "IDLE"

    remote.card = "<html>not a card</html>"
    clock(h).advance(10)
    outcome = (await probe(h))[agent_id]
    assert (outcome.ok, outcome.error) == (False, "agent card is not JSON")
    remote.card = ["a", "list"]
    clock(h).advance(10)
    outcome = (await probe(h))[agent_id]
    assert (outcome.ok, outcome.error) == (False, "agent card is not a JSON object")
    assert (await health_row(h, agent_id)).consecutive_failures == 2


async def test_successful_probes_keep_the_silence_monitor_away(
    ymera: AppHarness, remote: FakeAgent
) -> None:
    h = ymera
    agent_id = await register(h, "steady", remote.url)
    timeout = h.settings.agents.heartbeat_timeout
    for _ in range(6):  # a minute of probes, every 10 s
        await probe(h)
        clock(h).advance(10)
        async with h.state.db.transaction() as session:
            gone = await agents_service.mark_silent_offline(
                session, now=clock(h).now(), heartbeat_timeout=timeout
            )
        assert gone == []
    assert (await agent_row(h, agent_id)).status == "IDLE"


async def test_paused_agent_is_ejected_but_stays_paused(
    ymera: AppHarness, remote: FakeAgent
) -> None:
    h = ymera
    agent_id = await register(h, "paused", remote.url)
    await probe(h)
    async with h.state.db.transaction() as session:
        await agents_service.pause(
            session, principal=SYSTEM, agent_id=agent_id, reason="maintenance", now=clock(h).now()
        )
    remote.health_status = 500
    clock(h).advance(10)
    await fail_until_ejected(h, agent_id)
    agent = await agent_row(h, agent_id)
    assert (agent.status, agent.status_reason) == ("PAUSED", "maintenance")
    [ejected] = await events(h, agent_id, "agent.ejected")
    assert ejected.data["status"] == "PAUSED"


async def test_two_replicas_probe_each_agent_once(ymera: AppHarness, remote: FakeAgent) -> None:
    """Every replica runs the probe loop; the per-agent lease lets one probe each agent."""
    h = ymera
    ids = [await register(h, f"fleet-{i}", remote.url) for i in range(6)]
    first, second = await asyncio.gather(
        probe_once(h.state, owner="replica-a"), probe_once(h.state, owner="replica-b")
    )
    probed = [o.agent_id for o in (*first, *second)]
    assert sorted(probed) == sorted(ids)
    assert remote.hits == 6
    assert all(o.verdict == Verdict.NONE for o in (*first, *second))
    for agent_id in ids:
        health = await health_row(h, agent_id)
        assert health.lease_owner is None
        assert health.next_probe_at == clock(h).now() + timedelta(seconds=10)


async def test_a_lost_lease_drops_the_late_result(ymera: AppHarness, remote: FakeAgent) -> None:
    """A replica that took longer than its lease must not apply its result over the
    one of the replica that took the agent over."""
    from ymera.agents import health_checks

    h = ymera
    agent_id = await register(h, "contested", remote.url)
    now = clock(h).now()
    async with h.state.db.transaction() as session:
        due = await health_checks.due_agents(session, now=now, limit=10)
        [target] = await health_checks.claim(
            session, due=due, owner="slow-replica", now=now, lease_seconds=6
        )
    assert await probe_once(h.state, owner="other") == []  # leased: nobody else probes
    clock(h).advance(6)
    [taken_over] = await probe_once(h.state, owner="other")
    assert taken_over.verdict == Verdict.NONE
    late = health_checks.ProbeResult(ok=False, error="late", latency_seconds=9.0)
    async with h.state.db.transaction() as session:
        verdict = await health_checks.apply_result(
            session,
            target=target,
            result=late,
            owner="slow-replica",
            now=clock(h).now(),
            policy=health_checks.EjectionPolicy(),
            interval=10,
        )
    assert verdict is None
    health = await health_row(h, agent_id)
    assert (health.consecutive_failures, health.last_probe_ok) == (0, True)

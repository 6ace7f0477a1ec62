"""Per-agent metrics on every backend: the upsert, windows, the endpoint, retention,
and the Prometheus series with their cardinality cap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from tests.agents.test_metrics_math import histogram
from tests.conftest import AppHarness
from tests.fixtures.backends import Backend
from ymera.agents import metrics as agent_metrics
from ymera.agents import service as agents_service
from ymera.agents.metrics import quantile, record_feedback, record_outcome
from ymera.agents.schemas import AgentCreate
from ymera.app import create_app
from ymera.auth.permissions import Permission, Role
from ymera.auth.principal import Principal
from ymera.kit.clock import FrozenClock
from ymera.models.agent_metrics import AgentMetricBucket
from ymera.runtime import agent_probe
from ymera.runtime.loops import DEFAULT_LOOPS

API = "/api/v1/agents"


def _start() -> datetime:
    """Now, on the 30th second of the minute (JWTs are checked against this clock)."""
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    return now if now <= datetime.now(UTC) else now - timedelta(minutes=1)


async def _frozen_app(settings: Any) -> AsyncIterator[AppHarness]:
    # Only the outbox loops: tests drive upkeep and probes themselves.
    app = create_app(settings, clock=FrozenClock(_start()), loops=DEFAULT_LOOPS)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ymera.test") as client:
            yield AppHarness(app, client, settings)


@pytest.fixture
async def frozen(backend: Backend) -> AsyncIterator[AppHarness]:
    async for h in _frozen_app(backend.settings()):
        yield h


@pytest.fixture
async def capped(backend: Backend) -> AsyncIterator[AppHarness]:
    async for h in _frozen_app(backend.settings(agents={"metrics_max_agent_labels": 2})):
        yield h


# Registry changes go through the service as a system principal: faster than users and
# tokens (argon2) for tests that are not about the HTTP surface.
SYSTEM = Principal(kind="system", user_id="", role="admin", permissions=frozenset(Permission))


async def create(h: AppHarness, name: str, **fields: Any) -> dict[str, Any]:
    async with h.state.db.transaction() as session:
        agent = await agents_service.create_agent(
            session,
            principal=SYSTEM,
            data=AgentCreate(name=name, **fields),
            now=h.state.clock.now(),
        )
        return {"id": agent.id, "name": agent.name}


async def heartbeat(h: AppHarness, agent_id: str, load: int) -> None:
    async with h.state.db.transaction() as session:
        await agents_service.heartbeat(
            session, principal=SYSTEM, agent_id=agent_id, load=load, now=h.state.clock.now()
        )


async def delete(h: AppHarness, agent_id: str) -> None:
    async with h.state.db.transaction() as session:
        await agents_service.delete_agent(
            session, principal=SYSTEM, agent_id=agent_id, force=True, now=h.state.clock.now()
        )


async def record(
    h: AppHarness,
    agent_id: str,
    *,
    at: datetime,
    latency: float,
    ok: bool = True,
    task_type: str = "build",
) -> None:
    async with h.state.db.transaction() as session:
        await record_outcome(
            session,
            agent_id=agent_id,
            task_type=task_type,
            success=ok,
            latency_seconds=latency,
            now=at,
        )


async def record_then_roll_back(h: AppHarness, agent_id: str, *, at: datetime) -> None:
    async with h.state.db.transaction() as session:
        await record_outcome(
            session, agent_id=agent_id, task_type="x", success=True, latency_seconds=1.0, now=at
        )
        raise RuntimeError("the engine's transaction failed")


async def get_metrics(h: AppHarness, agent_id: str, **params: str) -> dict[str, Any]:
    resp = await h.client.get(
        f"{API}/{agent_id}/metrics", params=params, headers=await h.headers(Role.VIEWER)
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_window_sums_only_its_buckets(frozen: AppHarness) -> None:
    h = frozen
    agent = await create(h, "metered", max_concurrency=4)
    now = h.state.clock.now()
    recent = [0.05, 0.2, 0.3, 1.5, 4.0, 0.07]  # within the last 5 minutes
    for i, latency in enumerate(recent):
        await record(h, agent["id"], at=now - timedelta(minutes=i % 4), latency=latency, ok=i != 3)
    await record(h, agent["id"], at=now - timedelta(minutes=10), latency=30.0, ok=False)
    await record(h, agent["id"], at=now - timedelta(days=3), latency=600.0)
    for score, minutes_ago in ((1.0, 1), (0.5, 2), (0.0, 30)):
        async with h.state.db.transaction() as session:
            await record_feedback(
                session,
                agent_id=agent["id"],
                score=score,
                now=now - timedelta(minutes=minutes_ago),
            )
    await heartbeat(h, agent["id"], load=3)

    five = await get_metrics(h, agent["id"], window="5m")
    assert (five["tasks"], five["successes"], five["failures"]) == (6, 5, 1)
    assert five["success_rate"] == pytest.approx(5 / 6)
    assert five["latency_p50_seconds"] == pytest.approx(quantile(histogram(recent), 0.5))
    assert five["latency_p95_seconds"] == pytest.approx(quantile(histogram(recent), 0.95))
    assert five["latency_mean_seconds"] == pytest.approx(sum(recent) / 6)
    assert five["resolution_seconds"] == 60
    since = datetime.fromisoformat(five["since"])
    assert since == now.replace(second=0) - timedelta(minutes=4)
    # Throughput: tasks over the span the window's buckets cover (4.5 minutes here).
    assert five["throughput_per_minute"] == pytest.approx(6 / 4.5)
    assert five["quality_score"] == pytest.approx(0.75)
    assert five["feedback_count"] == 2
    assert (five["current_load"], five["max_concurrency"], five["status"]) == (3, 4, "ACTIVE")
    assert five["health"] is None  # a worker agent is not probed

    hour = await get_metrics(h, agent["id"], window="1h")
    assert (hour["tasks"], hour["failures"], hour["feedback_count"]) == (7, 2, 3)
    assert hour["latency_p95_seconds"] == pytest.approx(quantile(histogram([*recent, 30.0]), 0.95))
    week = await get_metrics(h, agent["id"], window="7d")
    assert (week["tasks"], week["resolution_seconds"]) == (8, 3600)
    assert (await get_metrics(h, agent["id"], window="24h"))["tasks"] == 7


async def test_task_type_filter_and_empty_window(frozen: AppHarness) -> None:
    h = frozen
    agent = await create(h, "typed")
    now = h.state.clock.now()
    await record(h, agent["id"], at=now, latency=0.1, task_type="build")
    await record(h, agent["id"], at=now, latency=0.2, task_type="test", ok=False)
    build = await get_metrics(h, agent["id"], window="5m", task_type="build")
    assert (build["tasks"], build["failures"], build["task_type"]) == (1, 0, "build")
    other = await get_metrics(h, agent["id"], window="5m", task_type="deploy")
    assert other["tasks"] == 0
    assert other["success_rate"] is None
    assert other["latency_p50_seconds"] is None
    assert other["throughput_per_minute"] == 0
    assert other["quality_score"] is None


async def test_endpoint_errors(frozen: AppHarness) -> None:
    h = frozen
    agent = await create(h, "errs")
    viewer = await h.headers(Role.VIEWER)
    missing = await h.client.get(f"{API}/nope/metrics", headers=viewer)
    assert missing.status_code == 404
    assert missing.json()["code"] == "agent_not_found"
    bad = await h.client.get(f"{API}/{agent['id']}/metrics?window=2h", headers=viewer)
    assert bad.status_code == 422
    anonymous = await h.client.get(f"{API}/{agent['id']}/metrics")
    assert anonymous.status_code == 401


async def test_bad_values_are_refused(frozen: AppHarness) -> None:
    h = frozen
    agent = await create(h, "strict")
    async with h.state.db.transaction() as session:
        with pytest.raises(ValueError, match="latency"):
            await record_outcome(
                session,
                agent_id=agent["id"],
                task_type="x",
                success=True,
                latency_seconds=float("nan"),
                now=h.state.clock.now(),
            )
        with pytest.raises(ValueError, match="score"):
            await record_feedback(session, agent_id=agent["id"], score=1.5, now=h.state.clock.now())


async def _bucket_counts(h: AppHarness, agent_id: str) -> dict[int, tuple[int, int]]:
    async with h.state.db.transaction(readonly=True) as session:
        rows = await session.execute(
            select(
                AgentMetricBucket.period,
                func.sum(AgentMetricBucket.successes),
                func.sum(AgentMetricBucket.failures),
            )
            .where(AgentMetricBucket.agent_id == agent_id)
            .group_by(AgentMetricBucket.period)
        )
        return {int(p): (int(s), int(f)) for p, s, f in rows}


async def test_concurrent_outcomes_are_all_counted(frozen: AppHarness) -> None:
    """20 outcomes in 20 concurrent transactions hit the same two bucket rows; the
    upsert must count every one (no lost update, no duplicate-key failure)."""
    h = frozen
    agent = await create(h, "busy")
    now = h.state.clock.now()
    await asyncio.gather(
        *(record(h, agent["id"], at=now, latency=0.01 * (i + 1), ok=i % 4 != 0) for i in range(20))
    )
    assert await _bucket_counts(h, agent["id"]) == {60: (15, 5), 3600: (15, 5)}
    async with h.state.db.transaction(readonly=True) as session:
        rows = (await session.execute(select(func.count()).select_from(AgentMetricBucket))).scalar()
    assert rows == 2  # one minute row and one hour row


async def test_an_outcome_rolled_back_is_not_counted(frozen: AppHarness) -> None:
    h = frozen
    agent = await create(h, "undo")
    with pytest.raises(RuntimeError):
        await record_then_roll_back(h, agent["id"], at=h.state.clock.now())
    assert await _bucket_counts(h, agent["id"]) == {}


async def test_pruning_keeps_what_windows_need_and_is_idempotent(frozen: AppHarness) -> None:
    h = frozen
    keep = await create(h, "keeper")
    gone = await create(h, "deleted-later")
    now = h.state.clock.now()
    await record(h, keep["id"], at=now - timedelta(hours=47), latency=0.1)  # minute+hour kept
    await record(h, keep["id"], at=now - timedelta(hours=50), latency=0.1)  # minute pruned
    await record(h, keep["id"], at=now - timedelta(days=31), latency=0.1)  # both pruned
    await record(h, gone["id"], at=now, latency=0.1)
    await delete(h, gone["id"])

    assert await agent_probe.prune_metrics_once(h.state) == 2 + 1 + 2
    assert await agent_probe.prune_metrics_once(h.state) == 0
    assert await _bucket_counts(h, keep["id"]) == {60: (1, 0), 3600: (2, 0)}
    assert await _bucket_counts(h, gone["id"]) == {}


# --- Prometheus ----------------------------------------------------------------------------


async def _samples(h: AppHarness, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    resp = await h.client.get("/metrics")
    assert resp.status_code == 200
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


async def test_prometheus_series_are_capped_per_agent(capped: AppHarness) -> None:
    """With a cap of 2, the first two agents get their own label; the others share
    `_other`, so the number of series stays bounded however many agents there are."""
    h = capped
    agent_probe.bind_agent_series(h.state)
    agents = [await create(h, f"prom-{i}", max_concurrency=5) for i in range(5)]
    now = h.state.clock.now()
    for i, agent in enumerate(agents):
        for _ in range(i + 1):
            await record(h, agent["id"], at=now, latency=0.2)
    await record(h, agents[4]["id"], at=now, latency=50.0, ok=False)
    with pytest.raises(RuntimeError):  # rolled back: not counted
        await record_then_roll_back(h, agents[0]["id"], at=now)

    tasks = await _samples(h, "ymera_agent_tasks_total")
    assert tasks == {
        _key(agent="prom-0", outcome="success"): 1,
        _key(agent="prom-1", outcome="success"): 2,
        _key(agent="_other", outcome="success"): 3 + 4 + 5,
        _key(agent="_other", outcome="failure"): 1,
    }
    counts = await _samples(h, "ymera_agent_task_latency_seconds_count")
    assert counts == {_key(agent="prom-0"): 1, _key(agent="prom-1"): 2, _key(agent="_other"): 13}
    slow = await _samples(h, "ymera_agent_task_latency_seconds_bucket")
    assert slow[_key(agent="_other", le="30.0")] == 12
    assert slow[_key(agent="_other", le="60.0")] == 13

    for i, agent in enumerate(agents):
        await heartbeat(h, agent["id"], load=i)
    await agent_probe.refresh_load_gauges(h.state)
    loads = await _samples(h, "ymera_agent_load")
    assert loads == {_key(agent="prom-0"): 0, _key(agent="prom-1"): 1, _key(agent="_other"): 9}

    await delete(h, agents[1]["id"])
    await agent_probe.refresh_load_gauges(h.state)
    assert _key(agent="prom-1") not in await _samples(h, "ymera_agent_load")


async def test_default_app_exports_agent_series(harness: AppHarness) -> None:
    """The app's upkeep loop wires outcomes to /metrics without any set-up."""
    agent = await create(harness, "exported")
    now = harness.state.clock.now()
    deadline = time.monotonic() + 10
    seen: dict[tuple[tuple[str, str], ...], float] = {}
    while time.monotonic() < deadline:
        if agent_metrics.series_of(harness.state.db) is not None:
            await record(harness, agent["id"], at=now, latency=0.5)
            seen = await _samples(harness, "ymera_agent_tasks_total")
            break
        await asyncio.sleep(0.02)
    assert seen == {_key(agent="exported", outcome="success"): 1}

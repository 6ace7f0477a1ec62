"""Policies over the API, learning wired into dispatch through the task-end
transaction, persistence across a restart, stats, reset, pooling and
explanations: on both databases."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import numpy as np
import pytest
import websockets
from sqlalchemy import select

from tests.agents.test_worker_protocol import agent_and_key, hello, next_frame, ws_url
from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer
from ymera.app import create_app
from ymera.auth.permissions import Role
from ymera.kit.clock import FrozenClock
from ymera.models.events import Event
from ymera.models.routing import LearningStat
from ymera.routing.engine import RoutingEngine
from ymera.routing.health import KEPT_AFTER_EJECTION
from ymera.routing.learning.service import value_scale
from ymera.routing.strategies.learned import Learned
from ymera.routing.types import AgentSlot, TaskView
from ymera.runtime.routing_loop import refresh_routing
from ymera.tasks import hooks


async def test_policy_global_and_per_type(harness: AppHarness) -> None:
    admin = await harness.headers(Role.ADMIN)
    viewer = await harness.headers(Role.VIEWER)
    got = (await harness.client.get("/api/v1/routing/policy", headers=viewer)).json()
    assert got["default"]["strategy"] == "least_loaded"
    assert got["default"]["mode"] == "PASSIVE"
    assert got["per_type"] == []
    denied = await harness.client.put(
        "/api/v1/routing/policy", json={"strategy": "learned"}, headers=viewer
    )
    assert denied.status_code == 403
    bad = await harness.client.put(
        "/api/v1/routing/policy", json={"strategy": "psychic"}, headers=admin
    )
    assert bad.status_code == 422
    body = {"strategy": "learned", "mode": "REINFORCEMENT"}
    body["params"] = {
        "reward_weights": {"success": 1, "latency": 0.05, "feedback": 0.5},
        "plausible": 0.0,
        "opportunity": 0.8,
        "congestion": False,
    }
    too_much = {**body, "params": {"opportunity": 3}}
    resp = await harness.client.put("/api/v1/routing/policy", json=too_much, headers=admin)
    assert resp.status_code == 422
    assert "opportunity" in resp.text
    resp = await harness.client.put("/api/v1/routing/policy", json=body, headers=admin)
    assert resp.status_code == 200, resp.text
    per = {"task_type": "review", "strategy": "weighted", "params": {"weights": {"a": 2}}}
    resp = await harness.client.put("/api/v1/routing/policy", json=per, headers=admin)
    assert resp.status_code == 200, resp.text
    got = (await harness.client.get("/api/v1/routing/policy", headers=viewer)).json()
    assert got["default"]["strategy"] == "learned"
    assert got["default"]["params"]["reward_weights"]["latency"] == 0.05
    assert [(p["task_type"], p["strategy"]) for p in got["per_type"]] == [("review", "weighted")]
    engine: RoutingEngine = harness.state.extras["routing"]
    assert engine.policy_for("review").strategy == "weighted"
    assert engine.policy_for("other").strategy == "learned"
    assert engine.policy_for("other").reward_weights().feedback == 0.5
    learned = engine.strategy_for(engine.policy_for("other"))
    assert isinstance(learned, Learned)
    assert learned.plausible == 0.0  # the policy's params reach the strategy
    assert (learned.opportunity, learned.congestion) == (0.8, False)
    resp = await harness.client.delete("/api/v1/routing/policy/review", headers=admin)
    assert resp.status_code == 204
    assert engine.policy_for("review").strategy == "learned"
    again = await harness.client.delete("/api/v1/routing/policy/review", headers=admin)
    assert again.status_code == 404
    async with harness.state.db.transaction(readonly=True) as session:
        kinds = (
            await session.scalars(
                select(Event.resource_id).where(Event.type == "routing.policy_changed")
            )
        ).all()
    assert sorted(kinds) == ["*", "review", "review"]


async def _run_tasks(
    live: LiveServer, key: str, results: list[bool], task_type: str = "t"
) -> list[str]:
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    ids = []
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=1, task_types=[task_type])
        for ok in results:
            body = {"type": task_type, "retry": {"max_attempts": 1}}
            task = (await h.client.post("/api/v1/tasks", json=body, headers=dev)).json()
            ids.append(task["id"])
            frame = await next_frame(ws, "assign")
            ref = {k: frame[k] for k in ("task_id", "attempt", "lease_token")}
            if ok:
                await ws.send(json.dumps({"type": "result", **ref, "output": {}}))
            else:
                err = {"message": "no", "retryable": False}
                await ws.send(json.dumps({"type": "fail", **ref, "error": err}))
            await next_frame(ws, "ack")
    return ids


async def test_outcomes_are_learned_persisted_and_reset(live: LiveServer) -> None:
    h = live.harness
    admin = await h.headers(Role.ADMIN)
    agent, key = await agent_and_key(live, "learner", capabilities=[{"name": "py"}])
    ids = await _run_tasks(live, key, [True, True, True, False])
    fb = await h.client.post(f"/api/v1/tasks/{ids[0]}/feedback", json={"score": 0.9}, headers=admin)
    assert fb.status_code == 200, fb.text
    stats = (await h.client.get("/api/v1/learning/stats", headers=admin)).json()
    assert stats["half_life_seconds"] == 86400.0
    [row] = stats["stats"]
    assert (row["agent_id"], row["task_type"], row["outcomes"]) == (agent["id"], "t", 4)
    assert row["alpha"] > row["beta"]
    assert 0.5 < row["success_mean"] < 0.8
    assert row["feedback_count"] == 1.0
    assert row["feedback_mean"] > 0.5
    # This replica's engine learned at commit, without waiting for a refresh.
    engine: RoutingEngine = h.state.extras["routing"]
    col = engine.learning.types["t"]
    assert engine.learning.cells.n[col, engine.learning.agents[agent["id"]]] == 4

    # A restarted server (a new app on the same database) starts from what was stored.
    app2 = create_app(h.settings)
    async with app2.router.lifespan_context(app2):
        engine2: RoutingEngine = app2.state.ymera.extras["routing"]
        assert (
            engine2.learning.cells.n[
                engine2.learning.types["t"], engine2.learning.agents[agent["id"]]
            ]
            == 4
        )

    resp = await h.client.post(f"/api/v1/learning/reset?agent_id={agent['id']}", headers=admin)
    assert resp.json() == {"deleted": 1}
    assert (await h.client.get("/api/v1/learning/stats", headers=admin)).json()["stats"] == []
    viewer = await h.headers(Role.VIEWER)
    assert (await h.client.post("/api/v1/learning/reset", headers=viewer)).status_code == 403


async def test_learned_explanations_are_kept_with_the_task(live: LiveServer) -> None:
    h = live.harness
    admin = await h.headers(Role.ADMIN)
    body = {"strategy": "learned", "mode": "ACTIVE"}
    assert (
        await h.client.put("/api/v1/routing/policy", json=body, headers=admin)
    ).status_code == 200
    _, key = await agent_and_key(live, "explained", capabilities=[{"name": "py"}])
    ids = await _run_tasks(live, key, [True, True])
    routing = (await h.client.get(f"/api/v1/tasks/{ids[1]}/routing", headers=admin)).json()
    decision = routing["decision"]
    assert decision["strategy"] == "learned"
    assert decision["learning_mode"] == "ACTIVE"
    assert decision["queue_price"] >= 2.0  # the wait priced as congestion
    assert decision["chosen"]["name"] == "explained"
    assert "Thompson" in decision["chosen"]["why"]
    parts = decision["candidates"][0]["score"]
    assert parts["observations"] == 1  # the first task's outcome was learned
    assert {"score", "sampled_success", "load_cost", "success_mean", "pooled_prior"} <= set(parts)


async def _learn(harness: AppHarness, outcomes: list[tuple[str, str, bool]]) -> None:
    now = harness.state.clock.now()
    async with harness.state.db.transaction() as session:
        for i, (agent_id, task_type, ok) in enumerate(outcomes):
            at = now + timedelta(milliseconds=i)
            await hooks.notify_outcome(
                session, hooks.Outcome(agent_id, task_type, at, success=ok, latency=2.0)
            )


async def test_a_new_agent_starts_from_its_peers(harness: AppHarness) -> None:
    engine: RoutingEngine = harness.state.extras["routing"]
    admin = await harness.headers(Role.ADMIN)
    body = {"strategy": "learned", "mode": "ACTIVE"}
    assert (
        await harness.client.put("/api/v1/routing/policy", json=body, headers=admin)
    ).status_code == 200
    caps = {"py": 0.5}
    slots = [
        AgentSlot("vet-1", "vet-1", caps, 0, 4, agent_type="DEVELOPER"),
        AgentSlot("vet-2", "vet-2", caps, 0, 4, agent_type="DEVELOPER"),
        AgentSlot("rookie", "rookie", caps, 0, 4, agent_type="DEVELOPER"),
        AgentSlot("stranger", "stranger", {"go": 0.5}, 0, 4, agent_type="WRITER"),
    ]
    engine.choose(TaskView("x", "code", []), slots)  # the engine meets the agents
    await _learn(harness, [("vet-1", "code", True)] * 9 + [("vet-2", "code", False)])
    await _learn(harness, [("stranger", "code", False)] * 10)
    decision = engine.choose(TaskView("y", "code", []), slots)
    parts = {c["name"]: c["score"] for c in decision.explanation["candidates"]}
    rookie = parts["rookie"]
    assert rookie["observations"] == 0
    assert rookie["pooled_prior"] == 4.0
    assert rookie["peer_success"] > 0.8  # pooled from vet-1 and vet-2, not the stranger
    assert rookie["success_mean"] > 0.7
    # Without peers of the same group the whole fleet's record is the prior.
    stats = (await harness.client.get("/api/v1/learning/stats", headers=admin)).json()["stats"]
    by_agent = {s["agent_id"]: s for s in stats}
    assert set(by_agent) == {"vet-1", "vet-2", "stranger"}
    assert by_agent["vet-2"]["pooled_prior"]["pseudo_observations"] == 4.0


async def test_an_agent_on_probation_takes_one_task_until_it_decides(
    harness: AppHarness,
) -> None:
    engine: RoutingEngine = harness.state.extras["routing"]
    await _learn(harness, [("flaky", "code", False)] * 10)  # ejected for 30 s
    later = FrozenClock(harness.state.clock.now() + timedelta(seconds=31))
    engine.clock = later
    flaky, steady = AgentSlot("flaky", "flaky", {}, 0, 4), AgentSlot("steady", "steady", {}, 3, 4)
    # Its ejection ran out: on probation, routable for one task...
    assert engine.choose(TaskView("x", "code", []), [flaky, steady]).agent_id == "flaky"
    flaky.load = 1  # (the dispatcher counts the task it was given)
    # ...and not for a second one while that one runs, however idle it is.
    d = engine.choose(TaskView("y", "code", []), [flaky, steady])
    assert d.agent_id == "steady"
    assert d.explanation["rejected"] == [
        {"agent_id": "flaky", "name": "flaky", "reason": "ejected by outlier detection"}
    ]
    later.advance(1)
    await _learn(harness, [("flaky", "code", True)])  # its probation task succeeded
    flaky.load, steady.load = 2, 3  # re-admitted: as many tasks as it has room for
    assert engine.choose(TaskView("v", "code", []), [flaky, steady]).agent_id == "flaky"


async def test_the_learned_strategy_outlives_the_reload_of_the_stored_statistics(
    harness: AppHarness,
) -> None:
    """The refresh loop reloads the learned statistics every few seconds: the
    learned strategy stays, with its opportunity prices and the arrivals they are
    solved from (a few hundred decisions' worth), reading the reloaded state."""
    engine: RoutingEngine = harness.state.extras["routing"]
    admin = await harness.headers(Role.ADMIN)
    body = {"strategy": "learned", "mode": "REINFORCEMENT"}
    await harness.client.put("/api/v1/routing/policy", json=body, headers=admin)
    await refresh_routing(harness.state)
    await _learn(harness, [("a", "code", True)] * 20 + [("b", "code", False)] * 20)
    slots = [AgentSlot("a", "a", {}, 0, 4), AgentSlot("b", "b", {}, 0, 4)]
    for i in range(3):
        engine.choose(TaskView(str(i), "code", []), slots)
    strategy = engine.strategy_for(engine.policy_for("code"))
    assert isinstance(strategy, Learned)
    assert strategy.prices.decisions == 3
    rows = {a: engine.learning.agents[a] for a in ("a", "b")}
    await refresh_routing(harness.state)
    assert engine.strategy_for(engine.policy_for("code")) is strategy
    assert strategy.learning is engine.learning  # the reloaded state, same rows
    assert {a: engine.learning.agents[a] for a in ("a", "b")} == rows
    assert engine.choose(TaskView("next", "code", []), slots).agent_id == "a"
    assert strategy.prices.decisions == 4
    # A reset of everything learned starts the strategies afresh.
    reset = await harness.client.post("/api/v1/learning/reset", json={}, headers=admin)
    assert reset.status_code == 200
    assert engine.strategy_for(engine.policy_for("code")) is not strategy


async def test_the_replica_solves_due_opportunity_prices_in_its_prices_loop(
    harness: AppHarness,
) -> None:
    """A decision that finds the learned strategy's prices due only signals it;
    the replica's prices loop solves them (off the decision path)."""
    engine: RoutingEngine = harness.state.extras["routing"]
    admin = await harness.headers(Role.ADMIN)
    body = {"strategy": "learned", "mode": "REINFORCEMENT"}
    await harness.client.put("/api/v1/routing/policy", json=body, headers=admin)
    await refresh_routing(harness.state)
    slots = [AgentSlot("a", "a", {}, 0, 4), AgentSlot("b", "b", {}, 0, 4)]
    engine.choose(TaskView("first", "code", []), slots)  # due at once
    strategy = engine.strategy_for(engine.policy_for("code"))
    assert isinstance(strategy, Learned)
    assert strategy.prices.decisions == 1
    assert strategy.prices.solved_at < 0  # not inside the decision
    deadline = asyncio.get_running_loop().time() + 10
    while strategy.prices.solved_at != 1:
        assert asyncio.get_running_loop().time() < deadline, "the prices loop did not solve"
        await asyncio.sleep(0.01)
    assert not strategy.prices.due()


async def test_passive_mode_records_but_does_not_route(harness: AppHarness) -> None:
    engine: RoutingEngine = harness.state.extras["routing"]
    admin = await harness.headers(Role.ADMIN)
    body = {"strategy": "learned", "mode": "PASSIVE"}
    await harness.client.put("/api/v1/routing/policy", json=body, headers=admin)
    await _learn(harness, [("good", "code", True)] * 20)
    await _learn(harness, [("bad", "code", i % 2 == 0) for i in range(20)])
    slots = [
        AgentSlot("good", "good", {}, 1, 4),
        AgentSlot("bad", "bad", {}, 0, 4),
    ]
    d = engine.choose(TaskView("x", "code", []), slots)
    assert d.agent_id == "bad"
    assert d.explanation["learning_mode"] == "PASSIVE"
    body["mode"] = "REINFORCEMENT"
    await harness.client.put("/api/v1/routing/policy", json=body, headers=admin)
    assert engine.choose(TaskView("x", "code", []), slots).agent_id == "good"


async def test_failing_agents_are_ejected_from_routing(harness: AppHarness) -> None:
    engine: RoutingEngine = harness.state.extras["routing"]
    admin = await harness.headers(Role.ADMIN)
    await _learn(harness, [("flaky", "code", False)] * 10)  # nothing expected of it: 10
    slots = [AgentSlot("flaky", "flaky", {}, 0, 4), AgentSlot("steady", "steady", {}, 3, 4)]
    d = engine.choose(TaskView("x", "code", []), slots)
    assert d.agent_id == "steady"
    assert d.explanation["rejected"] == [
        {"agent_id": "flaky", "name": "flaky", "reason": "ejected by outlier detection"}
    ]
    stats = (await harness.client.get("/api/v1/learning/stats", headers=admin)).json()
    assert [(e["agent_id"], e["reason"]) for e in stats["ejected"]] == [
        ("flaky", "10 consecutive failures")
    ]

    # The ejection learned the ten failures, then forgot all but a share of them:
    # what the agent does next decides.
    def flaky_failures() -> float:
        row = np.array([engine.learning.agents["flaky"]])
        return float(engine.learning.view(row, "code", time.time()).weight[0])

    assert flaky_failures() == pytest.approx(10 * KEPT_AFTER_EJECTION, rel=1e-3)
    # The refresh loop reloads the stored statistics (every replica's) every few
    # seconds, as a restart does: the forgetting is written to the store first,
    # so the reload does not bring the failures back.
    await refresh_routing(harness.state)
    assert engine.forgotten == {}
    assert flaky_failures() == pytest.approx(10 * KEPT_AFTER_EJECTION, rel=1e-3)
    async with harness.state.db.transaction(readonly=True) as session:
        stored = (await session.scalars(select(LearningStat))).one()
    assert (stored.agent_id, stored.n) == ("flaky", 10)
    worth = value_scale(stored.era, time.time(), engine.cfg.learning_half_life)
    assert stored.f * worth == pytest.approx(10 * KEPT_AFTER_EJECTION, rel=1e-3)
    # Ejected again before the next reload: the rest is written then.
    await _learn(harness, [("flaky", "code", False)])  # (it is ejected: not judged)
    engine.forgotten["flaky"] = KEPT_AFTER_EJECTION
    await refresh_routing(harness.state)
    assert engine.forgotten == {}
    assert flaky_failures() == pytest.approx((1 + 1) * KEPT_AFTER_EJECTION, rel=1e-3)

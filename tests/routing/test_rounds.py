"""A claim's decisions as one round (``Router.round``): the same choices as one
decision at a time, loads kept in step as tasks are assigned, and outlier
ejection (probation included) and panic mode applied within the round."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ymera.config import RoutingSettings
from ymera.kit.clock import FrozenClock
from ymera.routing.engine import PLAIN_MAX_AGENTS, Policy, RoutingEngine
from ymera.routing.learning.model import Mode
from ymera.routing.strategies import make
from ymera.routing.types import AgentSlot, TaskView


def slots(n: int, capacity: int = 2) -> list[AgentSlot]:
    return [
        AgentSlot(f"a{i}", f"a{i}", {"py": round(0.3 + 0.1 * i, 2)}, 0, capacity) for i in range(n)
    ]


def engine_with(strategy: str, **params: object) -> RoutingEngine:
    engine = RoutingEngine(RoutingSettings(), FrozenClock(datetime(2026, 1, 1, tzinfo=UTC)))
    mode = Mode.ACTIVE if strategy == "learned" else Mode.PASSIVE
    engine.set_policies([Policy(strategy=strategy, mode=mode, params=dict(params))])
    return engine


def view(i: int) -> TaskView:
    return TaskView(str(i), "code", ["py"])


@pytest.mark.parametrize("strategy", ["least_loaded", "capability_match", "round_robin"])
def test_a_round_chooses_as_one_decision_at_a_time_does(strategy: str) -> None:
    params = {"seed": 1} if strategy != "least_loaded" else {}
    one, many = engine_with(strategy, **params), engine_with(strategy, **params)
    alone, together = slots(5), slots(5)
    by_id = {s.agent_id: s for s in alone}
    singles = []
    for i in range(10):
        d = one.choose(view(i), [s for s in alone if s.free > 0])
        assert d.agent_id is not None
        by_id[d.agent_id].load += 1
        singles.append(d.agent_id)
    round_ = many.round(together)
    chosen = []
    for i in range(10):
        d = round_.choose(view(i))
        assert d.agent_id is not None
        round_.took(d.agent_id)
        chosen.append(d.agent_id)
    assert chosen == singles
    assert [s.load for s in together] == [s.load for s in alone] == [2] * 5


def test_the_default_policy_over_many_agents_ranks_arrays_and_chooses_alike() -> None:
    n = PLAIN_MAX_AGENTS * 3
    one, many = engine_with("least_loaded"), engine_with("least_loaded")
    alone, together = slots(n), slots(n)
    for i, (a, b) in enumerate(zip(alone, together, strict=True)):
        a.load = b.load = i % 2
    by_id = {s.agent_id: s for s in alone}
    round_ = many.round(together)
    for i in range(sum(a.free for a in alone)):
        single = one.choose(view(i), [s for s in alone if s.free > 0])
        assert single.agent_id is not None
        by_id[single.agent_id].load += 1
        d = round_.choose(view(i))
        assert d.agent_id == single.agent_id
        round_.took(d.agent_id)
    assert round_._fleet is not None  # type: ignore[attr-defined]  # arrays, not slots
    assert d.explanation["strategy"] == "least_loaded"


@pytest.mark.parametrize("strategy", ["least_loaded", "learned", "power_of_two"])
def test_a_round_keeps_the_loads_and_stops_at_capacity(strategy: str) -> None:
    engine = engine_with(strategy)
    agents = slots(3)
    round_ = engine.round(agents)
    got = [round_.choose(view(i)).agent_id for i in range(1)]
    round_.took(str(got[0]))
    round_.full("a2")  # another replica filled it
    while (d := round_.choose(view(len(got)))).agent_id is not None:
        round_.took(d.agent_id)
        got.append(d.agent_id)
    assert sorted(got) == sorted(["a0", "a0", "a1", "a1", *(["a2"] if got[0] == "a2" else [])])
    assert [a.load for a in agents] == [2, 2, 2]
    assert {r["reason"] for r in d.explanation["rejected"]} <= {"no free capacity"}


@pytest.mark.parametrize("params", [{}, {"seed": 0}], ids=["slots", "fleet"])
def test_a_round_holds_back_ejected_agents_and_probationers_to_one_task(
    params: dict[str, object],
) -> None:
    # least_loaded: plain Python on the slots by default; on the round's fleet
    # as soon as the policy has parameters.
    engine = engine_with("least_loaded", **params)
    clock = engine.clock
    assert isinstance(clock, FrozenClock)
    t0 = engine.now()
    for k in range(10):
        engine.detector.record("a0", False, t0 + k * 0.001)
    agents = slots(2, capacity=4)
    round_ = engine.round(agents)
    for i in range(3):
        d = round_.choose(view(i))
        assert d.agent_id == "a1"
        round_.took("a1")
    assert {"agent_id": "a0", "name": "a0", "reason": "ejected by outlier detection"} in (
        d.explanation["rejected"]
    )
    clock.advance(RoutingSettings().ejection_base_seconds + 1)  # on probation now
    round_ = engine.round(agents)
    assert round_.choose(view(3)).agent_id == "a0"  # idle: least loaded
    round_.took("a0")
    # Its one task runs: held back, though still the less loaded (1/4 against 3/4).
    assert round_.choose(view(4)).agent_id == "a1"
    engine.detector.record("a0", True, engine.now())  # it succeeded: re-admitted
    assert round_.choose(view(5)).agent_id == "a0"


def test_a_round_ignores_ejection_when_every_agent_is_ejected() -> None:
    engine = engine_with("learned")
    t0 = engine.now()
    for agent_id in ("a0", "a1"):
        for k in range(10):
            engine.detector.record(agent_id, False, t0 + k * 0.001)
    round_ = engine.round(slots(2))
    d = round_.choose(view(0))
    assert d.agent_id in ("a0", "a1")
    assert d.explanation["panic"] == "every eligible agent is ejected: ejection ignored"


def test_a_strategy_used_as_the_router_decides_in_rounds_too() -> None:
    agents = slots(4, capacity=1)
    round_ = make("capability_match").round(agents)
    order = []
    while (d := round_.choose(view(len(order)))).agent_id is not None:
        round_.took(d.agent_id)
        order.append(d.agent_id)
    assert order == ["a3", "a2", "a1", "a0"]  # highest proficiency first, each once

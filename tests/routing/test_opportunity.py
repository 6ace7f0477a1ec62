"""The opportunity cost of an agent's time: shadow prices of the fleet's fluid
plan (ymera.routing.learning.prices), and the learned strategy pricing it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ymera.routing.fleet import Fleet
from ymera.routing.learning.model import LearningState, Mode, RewardWeights
from ymera.routing.learning.prices import SlotPrices, _shadow_prices
from ymera.routing.strategies import make
from ymera.routing.types import TaskView

# Agent 0 is the best at both types, by far at X; agent 1 is nearly as good at Y.
VALUES = {"X": [0.9, 0.3], "Y": [0.8, 0.7]}


Column = tuple[str, float, np.ndarray, np.ndarray, np.ndarray]


def _columns(rate_x: float, rate_y: float) -> list[Column]:
    rows = np.array([0, 1])
    ones = np.ones(2)
    return [
        ("X", rate_x, rows, np.array(VALUES["X"]), ones),
        ("Y", rate_y, rows, np.array(VALUES["Y"]), ones),
    ]


def test_the_contended_agent_is_priced_at_what_its_time_earns_elsewhere() -> None:
    # 0.8 X and 0.8 Y tasks a second, one slot each, 1 s per task: the plan
    # gives agent 0 all of X and the rest of its time to Y, agent 1 the other Y
    # tasks with time to spare. One more second of agent 0 would move a Y task
    # from agent 1 to it: worth 0.8 - 0.7.
    prices = _shadow_prices(_columns(0.8, 0.8), np.array([1.0, 1.0]))
    assert prices[0] == pytest.approx(0.1, abs=1e-6)
    assert prices[1] == pytest.approx(0.0, abs=1e-9)


def test_a_fleet_with_time_to_spare_prices_nothing() -> None:
    prices = _shadow_prices(_columns(0.2, 0.2), np.array([1.0, 1.0]))
    assert np.allclose(prices, 0.0)


def test_a_plan_without_time_to_spare_prices_nothing() -> None:
    # 1.9 tasks a second on two slots of 1 s (95% busy), or more than they can
    # do at all (overflow): every slot would be priced at what the last task
    # squeezed in is worth; near saturation the wait's price routes alone.
    for rate in (0.95, 2.0):
        prices = _shadow_prices(_columns(rate, rate), np.array([1.0, 1.0]))
        assert np.allclose(prices, 0.0)
    # Up to the limit, prices are set.
    assert _shadow_prices(_columns(0.95, 0.95), np.array([1.0, 1.0]), max_busy=0.96)[0] > 0


def test_prices_are_solved_every_refresh_decisions_from_the_arrivals_seen() -> None:
    learning = _learning()
    prices = SlotPrices(refresh=10, window=100)
    weights = RewardWeights(success=1.0, latency=0.0, feedback=0.0)
    assert prices.due()
    prices.solve(learning, weights, 0.0)  # nothing seen yet: nothing to price
    assert not prices.prices.any()
    rows, capacity = np.array([0, 1]), np.array([1.0, 1.0])
    now = 0.0
    for k in range(9):
        now += 1 / 1.6  # 1.6 tasks a second, half of each type
        prices.note("X" if k % 2 == 0 else "Y", rows, capacity, now)
        if k == 4:  # fewer arrivals than a refresh: their rates are not told yet
            early = SlotPrices(refresh=10, window=100)
            early._arrivals, early._seen, early._capacity = (
                prices._arrivals,
                prices._seen,
                prices._capacity,
            )
            early.solve(learning, weights, now)
            assert not early.prices.any()
    assert not prices.due()
    prices.note("Y", rows, capacity, now + 1 / 1.6)
    assert prices.due()
    prices.solve(learning, weights, now)
    assert not prices.due()
    assert prices.prices[0] == pytest.approx(0.1, abs=0.03)
    assert prices.prices[1] == pytest.approx(0.0, abs=1e-6)


def _learning() -> LearningState:
    """Agent a0 and a1 (learning rows 0 and 1) with long records at VALUES."""
    learning = LearningState(prior_strength=0.0)
    for row, agent in enumerate(("a0", "a1")):
        learning.agent_row(agent)
        for task_type, values in VALUES.items():
            wins = round(1000 * values[row])
            for i in range(1000):
                learning.observe(agent, task_type, success=i < wins, latency=1.0, now=0.0)
    return learning


def _fleet() -> Fleet:
    fleet = Fleet()
    for agent in ("a0", "a1"):
        fleet.add(agent, capabilities={"py": 0.5}, capacity=1, limit=math.inf, rebuild=False)
    fleet.rebuild()
    return fleet


def _y_goes_to(opportunity: float) -> tuple[str | None, dict[str, float]]:
    """Route a stream of X and Y tasks (both agents free each time), then one Y
    task: who gets it, and the opportunity cost shown per agent."""
    learning = _learning()
    fleet = _fleet()
    clock = [0.0]
    strategy = make(
        "learned",
        learning=learning,
        mode=Mode.ACTIVE,
        clock=lambda: clock[0],
        seed=1,
        exploration=0.0,
        plausible=0.0,
        opportunity=opportunity,
    )
    for k in range(300):
        clock[0] += 1 / 1.6
        kind = "X" if k % 2 == 0 else "Y"
        strategy.select(TaskView(id=str(k), type=kind, required_capabilities=["py"]), fleet)
    clock[0] += 1 / 1.6
    d = strategy.select(TaskView(id="last", type="Y", required_capabilities=["py"]), fleet)
    costs = {
        c["name"]: c["score"].get("opportunity_cost", 0.0) for c in d.explanation["candidates"]
    }
    return d.agent_id, costs


def test_learned_leaves_the_contended_agent_to_the_work_only_it_does_well() -> None:
    # Greedy (no opportunity cost): the Y task goes to a0, the best at Y.
    agent, costs = _y_goes_to(0.0)
    assert agent == "a0"
    assert costs == {"a0": 0.0, "a1": 0.0}
    # Priced: a0's second is worth 0.1 to the X tasks; at weight 1.5 the Y
    # task costs 0.15 of a0's value, more than its 0.1 edge over a1.
    agent, costs = _y_goes_to(1.5)
    assert agent == "a1"
    assert costs["a0"] == pytest.approx(0.15, abs=0.05)
    assert costs["a1"] == pytest.approx(0.0, abs=1e-6)


def test_the_plan_takes_the_most_recently_scored_agents_of_a_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large fleet: per task type the plan holds at most ``max_agents``
    agents, those scored most recently; the others are priced nothing."""
    from ymera.routing.learning import prices as prices_module

    learning = LearningState(prior_strength=0.0)
    for i in range(12):
        learning.agent_row(f"a{i}")
    seen: list[np.ndarray] = []
    real = prices_module._shadow_prices

    def spy(columns: list[Column], capacity: np.ndarray, **kw: float) -> np.ndarray:
        seen.extend(c[2] for c in columns)
        return real(columns, capacity, **kw)

    monkeypatch.setattr(prices_module, "_shadow_prices", spy)
    prices = SlotPrices(refresh=6, window=100, max_agents=4)
    now = 0.0
    for k in range(6):  # agents 0-5, then 6-11 (the latest), scored one pair a time
        now += 1.0
        rows = np.array([2 * k, 2 * k + 1])
        prices.note("X", rows, np.ones(2), now)
    prices.solve(learning, RewardWeights(success=1.0, latency=0.0, feedback=0.0), now)
    assert [sorted(rows.tolist()) for rows in seen] == [[8, 9, 10, 11]]
    assert not prices.prices[:8].any()


def _fed(prices: SlotPrices) -> None:
    rows, capacity = np.array([0, 1]), np.array([1.0, 1.0])
    for k in range(prices.refresh):
        prices.note("X" if k % 2 == 0 else "Y", rows, capacity, (k + 1) / 1.6)


def test_an_agent_without_a_finite_estimate_is_left_out_of_the_plan() -> None:
    from types import SimpleNamespace

    class Learning:
        def view(self, rows: np.ndarray, task_type: str, now: float) -> SimpleNamespace:
            values = np.array([*VALUES[task_type], 0.99])[rows]
            latency = np.array([1.0, 1.0, np.nan])[rows]  # agent 2: nothing to plan with
            return SimpleNamespace(success=values, latency=latency, feedback=np.zeros(len(rows)))

    prices = SlotPrices(refresh=10, window=100)
    rows, capacity = np.array([0, 1, 2]), np.ones(3)
    for k in range(10):
        prices.note("X" if k % 2 == 0 else "Y", rows, capacity, (k + 1) / 1.6)
    weights = RewardWeights(success=1.0, latency=0.0, feedback=0.0)
    prices.solve(Learning(), weights, 10.0)  # type: ignore[arg-type]
    # The plan of agents 0 and 1 alone (as in the first test).
    assert prices.prices[0] == pytest.approx(0.1, abs=1e-6)
    assert prices.prices[1:].tolist() == [0.0, 0.0]


def test_a_failed_solve_leaves_no_prices_and_routing_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ymera.routing.learning import prices as prices_module

    def broken(*args: object, **kwargs: object) -> np.ndarray:
        raise ValueError("solver said no")

    monkeypatch.setattr(prices_module, "_shadow_prices", broken)
    prices = SlotPrices(refresh=10, window=100)
    _fed(prices)
    prices.solve(_learning(), RewardWeights(success=1.0, latency=0.0, feedback=0.0), 10.0)
    assert not prices.prices.any()
    agent, costs = _y_goes_to(1.5)  # the strategy too: greedy, no error
    assert agent == "a0"
    assert costs == {"a0": 0.0, "a1": 0.0}


async def test_the_server_solves_the_prices_off_the_decision_path() -> None:
    """In the server a learned strategy does not solve its prices inside a
    decision (a claim would stall for the linear program): it signals the
    engine, whose prices loop solves them between claims, the program on a
    thread; decisions until then use the prices they had. The answer is the
    one an inline solve gives."""
    import copy
    from datetime import UTC, datetime

    from ymera.config import RoutingSettings
    from ymera.kit.clock import FrozenClock
    from ymera.routing.engine import Policy, RoutingEngine
    from ymera.routing.strategies.learned import Learned
    from ymera.routing.types import AgentSlot

    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    engine = RoutingEngine(RoutingSettings(prior_strength=0.0), clock)
    policy = Policy(
        strategy="learned",
        mode=Mode.ACTIVE,
        params={"seed": 1, "exploration": 0.0, "plausible": 0.0},
    )
    engine.set_policies([policy])
    engine.learning = _learning()
    slots = [AgentSlot(a, a, {"py": 0.5}, 0, 1) for a in ("a0", "a1")]
    strategy = engine.strategy_for(policy)
    assert isinstance(strategy, Learned)
    strategy.prices = SlotPrices(refresh=10, window=100)

    def claim(count: int) -> None:  # a claim's decisions (both agents free each time)
        for k in range(count):
            clock.advance(1 / 1.6)
            kind = "X" if k % 2 == 0 else "Y"
            engine.choose(TaskView(str(k), kind, ["py"]), slots)

    claim(1)  # due at once: signalled, not solved
    assert engine.prices_due.is_set()
    assert strategy.prices.solved_at == -10
    assert await engine.solve_prices() == 1  # nothing seen yet to plan with
    engine.prices_due.clear()
    claim(24)  # 25 decisions: due again after 10, still not solved inline
    assert engine.prices_due.is_set()
    assert strategy.prices.solved_at == 1
    assert not strategy.prices.prices.any()
    inline = copy.deepcopy(strategy.prices)
    inline.solve(engine.learning, strategy.plan_weights(), engine.now())
    assert inline.prices[0] > 0.05  # a0's time is contended
    assert await engine.solve_prices() == 1
    assert strategy.prices.solved_at == 25
    assert np.allclose(strategy.prices.prices, inline.prices)
    assert await engine.solve_prices() == 0  # nothing due now


def test_the_prices_loop_serves_an_engine_from_any_event_loop() -> None:
    """The engine outlives event loops (it is built before the app's loop runs;
    tests start apps again): each prices loop signals on an event of its own
    loop, and what came due before it started is solved at once."""
    import asyncio
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from ymera.config import RoutingSettings
    from ymera.kit.clock import FrozenClock
    from ymera.routing.engine import Policy, RoutingEngine
    from ymera.routing.strategies.learned import Learned
    from ymera.routing.types import AgentSlot
    from ymera.runtime.routing_loop import routing_prices_loop

    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    engine = RoutingEngine(RoutingSettings(), clock)
    policy = Policy(strategy="learned", mode=Mode.ACTIVE, params={"seed": 1})
    engine.set_policies([policy])
    slots = [AgentSlot(a, a, {"py": 0.5}, 0, 1) for a in ("a0", "a1")]
    state = SimpleNamespace(extras={"routing": engine})

    async def serve(decisions: int) -> int:
        stop = asyncio.Event()
        loop = asyncio.create_task(routing_prices_loop(state, stop))  # type: ignore[arg-type]
        strategy = engine.strategy_for(policy)
        assert isinstance(strategy, Learned)
        for k in range(decisions):
            clock.advance(1.0)
            engine.choose(TaskView(str(k), "X", ["py"]), slots)
        for _ in range(500):  # until the loop has solved what is due
            if not strategy.prices.due():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await loop
        return strategy.prices.solved_at

    engine.choose(TaskView("before", "X", ["py"]), slots)  # due before any loop runs
    assert asyncio.run(serve(0)) == 1
    assert asyncio.run(serve(260)) == 261  # another event loop, the same engine

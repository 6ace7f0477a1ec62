"""Each strategy behind the one interface, the shared filter, and explanations."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest

from ymera.routing.fleet import Fleet
from ymera.routing.learning.model import LearningState, Mode
from ymera.routing.strategies import STRATEGIES, make
from ymera.routing.strategies.base import Strategy
from ymera.routing.strategies.learned import congestion_factor
from ymera.routing.types import AgentSlot, TaskView


def fleet_of(*specs: dict[str, object]) -> Fleet:
    fleet = Fleet()
    for spec in specs:
        spec = dict(spec)
        fleet.add(str(spec.pop("id")), **spec)  # type: ignore[arg-type]
    return fleet


def task(**kw: object) -> TaskView:
    base: dict[str, object] = {"id": "t1", "type": "code", "required_capabilities": ["py"]}
    base.update(kw)
    return TaskView(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_applies_the_shared_filter(name: str) -> None:
    fleet = fleet_of(
        {"id": "ok", "capabilities": {"py": 0.5}, "capacity": 2},
        {"id": "offline", "capabilities": {"py": 1.0}, "capacity": 2, "status": "OFFLINE"},
        {"id": "paused", "capabilities": {"py": 1.0}, "capacity": 2, "status": "PAUSED"},
        {"id": "error", "capabilities": {"py": 1.0}, "capacity": 2, "status": "ERROR"},
        {"id": "open", "capabilities": {"py": 1.0}, "capacity": 2, "circuit_open": True},
        {"id": "full", "capabilities": {"py": 1.0}, "capacity": 2, "load": 2},
        {"id": "nopy", "capabilities": {"go": 1.0}, "capacity": 2},
        {"id": "other", "capabilities": {"py": 1.0}, "capacity": 2, "task_types": ["x"]},
        {"id": "ejected", "capabilities": {"py": 1.0}, "capacity": 2},
        {"id": "hinted-out", "capabilities": {"py": 1.0}, "capacity": 2},
        {"id": "tester", "capabilities": {"py": 1.0}, "capacity": 2, "agent_type": "TESTER"},
    )
    fleet.ejected[fleet.by_key["ejected"]] = True
    strategy = make(name, seed=3)
    for _ in range(5):
        d = strategy.select(task(excluded_agents=["hinted-out"]), fleet)
        assert d.agent_id == "tester" or d.agent_id == "ok"
    d = strategy.select(task(excluded_agents=["hinted-out"], agent_type="DEVELOPER"), fleet)
    assert d.agent_id is None
    reasons = {r["name"]: r["reason"] for r in d.explanation["rejected"]}
    assert reasons == {
        "ok": "not a DEVELOPER agent",
        "offline": "not a DEVELOPER agent",
        "paused": "not a DEVELOPER agent",
        "error": "not a DEVELOPER agent",
        "open": "not a DEVELOPER agent",
        "full": "not a DEVELOPER agent",
        "nopy": "not a DEVELOPER agent",
        "other": "has no handler for task type 'code'",
        "ejected": "not a DEVELOPER agent",
        "hinted-out": "excluded by the task's routing hints",
        "tester": "not a DEVELOPER agent",
    }
    d = strategy.select(task(excluded_agents=["hinted-out", "tester"]), fleet)
    assert d.agent_id == "ok"
    reasons = {r["name"]: r["reason"] for r in d.explanation["rejected"]}
    assert reasons == {
        "offline": "status OFFLINE is not routable",
        "paused": "status PAUSED is not routable",
        "error": "status ERROR is not routable",
        "open": "circuit open",
        "full": "no free capacity",
        "nopy": "missing capabilities: py",
        "other": "has no handler for task type 'code'",
        "ejected": "ejected by outlier detection",
        "hinted-out": "excluded by the task's routing hints",
        "tester": "excluded by the task's routing hints",
    }
    assert d.explanation["strategy"] == name
    assert d.explanation["chosen"]["name"] == "ok"
    assert d.explanation["chosen"]["why"]
    assert [c["name"] for c in d.explanation["candidates"]] == ["ok"]
    assert "score" in d.explanation["candidates"][0]["score"]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_preferred_agents_go_first(name: str) -> None:
    fleet = fleet_of(
        {"id": "a", "capabilities": {"py": 0.9}, "capacity": 4},
        {"id": "b", "capabilities": {"py": 0.1}, "capacity": 4, "load": 3},
    )
    d = make(name, seed=1).select(task(preferred_agents=["b"]), fleet)
    assert d.agent_id == "b"
    assert d.explanation["chosen"]["why"].startswith("preferred")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_preferred_only_never_routes_elsewhere(name: str) -> None:
    fleet = fleet_of(
        {"id": "a", "capabilities": {"py": 0.9}, "capacity": 4},
        {"id": "b", "capabilities": {"py": 0.1}, "capacity": 4, "load": 4},
        {"id": "c", "capabilities": {"go": 1.0}, "capacity": 4},
    )
    strategy = make(name, seed=1)
    # The pinned agent is full: soft preference falls back to "a"; a pin waits.
    assert strategy.select(task(preferred_agents=["b"]), fleet).agent_id == "a"
    d = strategy.select(task(preferred_agents=["b"], preferred_only=True), fleet)
    assert d.agent_id is None
    reasons = {r["name"]: r["reason"] for r in d.explanation["rejected"]}
    assert reasons == {
        "a": "not one of the task's preferred agents (preferred_only)",
        "b": "no free capacity",
        "c": "missing capabilities: py",
    }
    fleet.load[fleet.by_key["b"]] = 3
    d = strategy.select(task(preferred_agents=["b"], preferred_only=True), fleet)
    assert d.agent_id == "b"
    assert d.explanation["chosen"]["why"].startswith("preferred")


def test_round_robin_cycles_per_type() -> None:
    fleet = fleet_of(
        *({"id": f"a{i}", "capabilities": {"py": 0.5}, "capacity": 9} for i in range(3))
    )
    rr = make("round_robin")
    picks = [rr.select(task(), fleet).agent_id for _ in range(6)]
    assert picks == ["a0", "a1", "a2", "a0", "a1", "a2"]
    fleet.set_status(1, "PAUSED")
    assert [rr.select(task(), fleet).agent_id for _ in range(3)] == ["a0", "a2", "a0"]
    assert rr.select(task(type="other"), fleet).agent_id == "a0"


def test_least_loaded_and_capability_match() -> None:
    fleet = fleet_of(
        {"id": "busy-expert", "capabilities": {"py": 0.9}, "capacity": 4, "load": 3},
        {"id": "idle-novice", "capabilities": {"py": 0.2}, "capacity": 4},
        {"id": "idle-mid", "capabilities": {"py": 0.5}, "capacity": 4},
    )
    assert make("least_loaded").select(task(), fleet).agent_id == "idle-mid"
    d = make("capability_match").select(task(), fleet)
    assert d.agent_id == "busy-expert"
    assert d.explanation["candidates"][0]["score"]["proficiency"] == 0.9


def test_power_of_two_prefers_the_less_loaded_of_its_draws() -> None:
    fleet = fleet_of(
        *(
            {"id": f"a{i}", "capabilities": {"py": 0.5}, "capacity": 10, "load": i}
            for i in range(10)
        )
    )
    p2 = make("power_of_two", seed=7)
    picks = Counter(p2.select(task(), fleet).agent_id for _ in range(400))
    # a9 can only win when drawn with itself, which never happens.
    assert "a9" not in picks
    assert picks["a0"] > picks["a8"]
    d = p2.select(task(), fleet)
    assert sum(c["score"]["sampled"] for c in d.explanation["candidates"]) == 2


def test_weighted_follows_static_weights() -> None:
    fleet = fleet_of(
        {"id": "heavy", "capabilities": {"py": 0.5}, "capacity": 10**6},
        {"id": "light", "capabilities": {"py": 0.5}, "capacity": 10**6},
        {"id": "zero", "capabilities": {"py": 0.5}, "capacity": 10**6},
    )
    w = make("weighted", seed=5, weights={"heavy": 3.0, "light": 1.0, "zero": 0.0})
    picks = Counter(w.select(task(), fleet).agent_id for _ in range(2000))
    assert picks["zero"] == 0
    assert 2.4 < picks["heavy"] / picks["light"] < 3.7
    d = w.select(task(), fleet)
    probs = {c["name"]: c["score"]["probability"] for c in d.explanation["candidates"]}
    assert probs == {"heavy": 0.75, "light": 0.25, "zero": 0.0}


def _learned_fleet() -> tuple[Fleet, LearningState]:
    fleet = fleet_of(
        {"id": "good", "capabilities": {"py": 0.5}, "capacity": 2},
        {"id": "bad", "capabilities": {"py": 0.5}, "capacity": 2},
    )
    learning = LearningState()
    for i in range(40):
        learning.observe("good", "code", success=i % 10 != 0, latency=1.0, now=1.0)
        learning.observe("bad", "code", success=i % 10 == 0, latency=1.0, now=1.0)
    return fleet, learning


def test_learned_modes() -> None:
    fleet, learning = _learned_fleet()
    active = make("learned", learning=learning, mode=Mode.ACTIVE, clock=lambda: 2.0, seed=1)
    picks = Counter(active.select(task(), fleet).agent_id for _ in range(200))
    assert picks["good"] > 190
    d = active.select(task(), fleet)
    assert d.explanation["learning_mode"] == "ACTIVE"
    scores = {c["name"]: c["score"] for c in d.explanation["candidates"]}
    assert scores["good"]["success_mean"] > 0.8 > 0.2 > scores["bad"]["success_mean"]
    assert scores["good"]["observations"] == 40
    # PASSIVE: recorded, not used: least loaded decides.
    fleet.load[fleet.by_key["good"]] = 1
    passive = make("learned", learning=learning, mode=Mode.PASSIVE, clock=lambda: 2.0)
    d = passive.select(task(), fleet)
    assert d.agent_id == "bad"
    assert d.explanation["learning_mode"] == "PASSIVE"


def best_and_fine() -> Fleet:
    """Two one-slot agents of the same skill: the learned-routing pricing tests."""
    return fleet_of(
        {"id": "best", "capabilities": {"py": 0.5}, "capacity": 1, "limit": math.inf},
        {"id": "fine", "capabilities": {"py": 0.5}, "capacity": 1, "limit": math.inf},
    )


def test_learned_prices_load() -> None:
    fleet = best_and_fine()
    learning = LearningState()
    for i in range(200):
        learning.observe("best", "code", success=i % 20 != 0, latency=10.0, now=1.0)  # 0.95
        learning.observe("fine", "code", success=i % 10 != 0, latency=10.0, now=1.0)  # 0.90
    rl = make("learned", learning=learning, mode=Mode.REINFORCEMENT, clock=lambda: 1.0, seed=2)
    assert rl.select(task(), fleet).agent_id == "best"
    # Three queued on "best": ~30 s of wait = 0.6 of reward, far more than its edge.
    fleet.load[fleet.by_key["best"]] = 4
    d = rl.select(task(), fleet)
    assert d.agent_id == "fine"
    best = next(c for c in d.explanation["candidates"] if c["name"] == "best")
    # Priced as congestion: one of the two slots busy (rho 0.5), (2 - rho) / (1 - rho) = 3.
    assert d.explanation["queue_price"] == pytest.approx(3.0)
    assert best["score"]["wait_expected"] == pytest.approx(4 * 10.0, rel=0.2)
    assert best["score"]["load_cost"] == pytest.approx(3 * 0.02 * 4 * 10.0, rel=0.2)


def test_congestion_factor() -> None:
    cap = np.array([1, 2, 4, 8])
    assert congestion_factor(np.zeros(4), cap) == pytest.approx(2.0)  # idle: own wait x2
    busy = np.array([1, 2, 4, 5])  # 12 of 15 slots: rho 0.8
    assert congestion_factor(busy, cap) == pytest.approx(6.0)
    # Queued work beyond capacity does not count as busier; rho is capped at 0.9.
    assert congestion_factor(cap * 5, cap) == pytest.approx(11.0)


def test_learned_prices_the_wait_as_congestion() -> None:
    # "best" (0.95) has two tasks queued behind its one slot: 3 s of its own
    # wait (0.06 of reward) is less than its edge over the idle "fine" (0.85),
    # so the task's own wait alone sends it to the queue; priced as
    # congestion (x3: half the slots busy) the wait outweighs the edge.
    fleet = best_and_fine()
    learning = LearningState()
    for i in range(5000):
        learning.observe("best", "code", success=i % 20 != 0, latency=1.5, now=1.0)
        learning.observe("fine", "code", success=i % 20 >= 3, latency=1.5, now=1.0)
    fleet.load[fleet.by_key["best"]] = 2

    def picks(**kw: Any) -> Counter[str | None]:
        rl = make(
            "learned", learning=learning, mode=Mode.REINFORCEMENT, clock=lambda: 1.0, seed=4, **kw
        )
        return Counter(rl.select(task(), fleet, explain=False).agent_id for _ in range(100))

    assert picks(congestion=False)["best"] == 100
    assert picks()["fine"] == 100


def test_reinforcement_weighs_latency_and_feedback() -> None:
    fleet = fleet_of(
        {"id": "slow", "capabilities": {"py": 0.5}, "capacity": 9},
        {"id": "fast", "capabilities": {"py": 0.5}, "capacity": 9},
    )
    learning = LearningState()
    for _ in range(100):
        learning.observe("slow", "code", success=True, latency=30.0, now=1.0)
        learning.observe("fast", "code", success=True, latency=1.0, now=1.0)
    rl = make("learned", learning=learning, mode=Mode.REINFORCEMENT, clock=lambda: 1.0, seed=2)
    assert rl.select(task(), fleet).agent_id == "fast"
    active = make("learned", learning=learning, mode=Mode.ACTIVE, clock=lambda: 1.0, seed=2)
    assert {active.select(task(), fleet).agent_id for _ in range(50)} == {"slow", "fast"}


def _one_good_many_worse() -> tuple[Fleet, LearningState]:
    """One agent at 0.9 (300 outcomes) and 30 at 0.7 (20 outcomes each): each
    of the 30 is clearly worse (0.7 + 2 sd < 0.9), yet its draw sometimes
    beats the good agent's."""
    fleet = Fleet()
    learning = LearningState(prior_strength=0.0)
    fleet.add("good", capabilities={"py": 0.5}, capacity=8, limit=math.inf, rebuild=False)
    for i in range(300):
        learning.observe("good", "code", success=i % 10 != 0, latency=1.0, now=1.0)
    for k in range(30):
        fleet.add(f"w{k}", capabilities={"py": 0.5}, capacity=8, limit=math.inf, rebuild=False)
        for i in range(20):
            learning.observe(f"w{k}", "code", success=i % 10 < 7, latency=1.0, now=1.0)
    fleet.rebuild()
    return fleet, learning


def _learned(learning: LearningState, seed: int, mode: Mode = Mode.ACTIVE, **kw: float) -> Strategy:
    """The learned strategy over ``learning`` at a fixed instant."""
    return make("learned", learning=learning, mode=mode, clock=lambda: 1.0, seed=seed, **kw)


def test_learned_samples_only_plausible_candidates() -> None:
    fleet, learning = _one_good_many_worse()
    plain = _learned(learning, 3, plausible=0, exploration=1.0)
    picks = Counter(plain.select(task(), fleet, explain=False).agent_id for _ in range(500))
    assert picks["good"] < 490  # plain Thompson sampling strays to the worse ones
    pruned = _learned(learning, 3)
    picks = Counter(pruned.select(task(), fleet, explain=False).agent_id for _ in range(500))
    assert picks["good"] == 500
    d = pruned.select(task(), fleet)
    assert "among the plausible" in d.explanation["chosen"]["why"]
    worse = [c for c in d.explanation["candidates"] if c["name"] != "good"]
    assert worse
    assert all(c["score"]["score"] is None for c in worse)
    assert all(c["score"]["upper_bound"] < 0.9 for c in worse)


def test_learned_draws_are_tempered_by_exploration() -> None:
    # Every candidate is sampled (plausible=0); the draw strays from the mean
    # by ``exploration`` x (Thompson draw - mean): 0.5 by default, 1 plain.
    fleet, learning = _one_good_many_worse()

    def good_picks(**kw: Any) -> int:
        rl = _learned(learning, 5, **kw)
        return Counter(rl.select(task(), fleet, explain=False).agent_id for _ in range(400))["good"]

    plain = good_picks(plausible=0, exploration=1.0)
    default = good_picks(plausible=0)
    greedy = good_picks(plausible=0, exploration=0.0)
    assert plain < default <= greedy == 400
    assert plain < 390
    d = _learned(learning, 5).select(task(), fleet)
    good = next(c for c in d.explanation["candidates"] if c["name"] == "good")["score"]
    # Half the Thompson draw's distance from the mean (sd 0.017 at 300 outcomes).
    assert abs(good["sampled_success"] - good["success_mean"]) < 0.5 * 4 * 0.018


def test_a_newcomer_without_a_record_is_still_sampled() -> None:
    fleet, learning = _one_good_many_worse()
    fleet.add("new", capabilities={"py": 0.5}, capacity=8, limit=math.inf)
    rl = _learned(learning, 3)
    picks = Counter(rl.select(task(), fleet, explain=False).agent_id for _ in range(300))
    assert picks["new"] > 0  # uniform prior: its upper bound reaches the best
    assert picks["good"] > 200
    assert set(picks) == {"good", "new"}


def test_a_plausible_rival_is_still_sampled() -> None:
    # The good agent's queue makes an idle worse one plausible again: the
    # wait is priced before plausibility is judged.
    fleet, learning = _one_good_many_worse()
    # 6 / 8 x 1 s of wait, priced as congestion (x2.03: 8 of 248 slots busy)
    # x 0.02: 0.03 of reward.
    # A worse agent's bound at 2 sd, net of latency (0.856), clears the good
    # one's expected value net of that wait (0.847); at 1.5 sd (0.808) it would
    # not, so the width is given here rather than left to the default.
    fleet.load[fleet.by_key["good"]] = 8 + 5
    rl = _learned(learning, 3, mode=Mode.REINFORCEMENT, plausible=2.0, exploration=1.0)
    picks = Counter(rl.select(task(), fleet, explain=False).agent_id for _ in range(200))
    assert 60 < picks["good"] < 170
    d = rl.select(task(), fleet)
    assert all(c["score"]["score"] is not None for c in d.explanation["candidates"])


def test_large_fleet_decisions_use_a_shortlist() -> None:
    rng = np.random.default_rng(0)
    fleet = Fleet()
    learning = LearningState()
    for i in range(3000):
        fleet.add(f"a{i}", capabilities={"py": 0.5}, capacity=2, rebuild=False)
    fleet.rebuild()
    for i in range(3000):
        for _ in range(10):
            learning.observe(
                f"a{i}", "code", success=bool(rng.random() < 0.4), latency=1.0, now=1.0
            )
    for _ in range(300):
        learning.observe("a1234", "code", success=True, latency=1.0, now=1.0)
    rl = make("learned", learning=learning, mode=Mode.ACTIVE, clock=lambda: 1.0, seed=4)
    d = rl.select(task(), fleet)
    assert d.explanation["candidates_total"] == 3000
    assert len(d.explanation["candidates"]) == 20
    assert Counter(rl.select(task(), fleet).agent_id for _ in range(20))["a1234"] >= 15


def test_the_shortlists_success_bounds_follow_every_change_of_a_record() -> None:
    """The bound a large candidate set is shortlisted by (own record's mean + 2
    sd) is kept per cell as records change: outcomes, a forgetting, a loaded
    cell, the tables growing; without a record it is Beta(1, 1)'s."""
    from ymera.routing.learning.stats import beta_sd

    learning = LearningState()
    rng = np.random.default_rng(3)

    def expected(agent: str, kind: str) -> float:
        row, col = learning.agents[agent], learning.types[kind]
        a = 1.0 + learning.cells.data[0, col, row]
        b = 1.0 + learning.cells.data[1, col, row]
        return float(a / (a + b) + 2 * beta_sd(np.array(a), np.array(b)))

    agents = [f"a{i}" for i in range(40)]  # past the tables' first sizes
    kinds = [f"k{j}" for j in range(6)]
    for _ in range(400):
        learning.observe(
            str(rng.choice(agents)),
            str(rng.choice(kinds)),
            success=bool(rng.random() < 0.6),
            latency=1.0,
            now=1.0,
        )
    learning.forget("a3", keep=0.1, now=2.0)
    learning.load_cell("a5", "k1", {"s": 7.0, "f": 2.0}, n=9, at=2.0)
    learning.agent_row("newcomer")
    for kind in kinds:
        rows = np.array([learning.agents[a] for a in [*agents, "newcomer"]])
        bounds = learning.success_bounds(rows, kind, 3.0)
        want = [expected(a, kind) for a in [*agents, "newcomer"]]
        assert bounds == pytest.approx(want)
    assert learning.success_bounds(np.array([learning.agents["newcomer"]]), "k0", 3.0)[
        0
    ] == pytest.approx(0.5 + 2 * math.sqrt(1 / 12))


def test_the_cached_shortlist_drops_agents_no_longer_eligible() -> None:
    fleet = Fleet()
    learning = LearningState()
    for i in range(400):
        fleet.add(f"a{i}", capabilities={"py": 0.5}, capacity=1, rebuild=False)
    fleet.rebuild()
    for i in range(400):
        for j in range(30):
            learning.observe(f"a{i}", "code", success=j % 3 == 0, latency=1.0, now=1.0)
    for _ in range(200):
        learning.observe("a7", "code", success=True, latency=1.0, now=1.0)
    rl = make("learned", learning=learning, mode=Mode.ACTIVE, clock=lambda: 1.0, seed=5)
    first = rl.select(task(), fleet)
    assert first.agent_id == "a7"
    listed = first.explanation["candidates"]
    assert listed[0]["agent_id"] == "a7"
    assert listed[0]["score"]["score"] >= max(c["score"]["score"] or -1 for c in listed)
    fleet.load[7] = 1  # busy now (capacity rule): the cached shortlist must skip it
    again = rl.select(task(), fleet)
    assert again.agent_id not in (None, "a7")
    assert again.explanation["candidates_total"] == 399


def test_router_protocol_on_slots() -> None:
    slots = [
        AgentSlot("a", "a", {"py": 0.5}, load=0, max_concurrency=1, status="PAUSED"),
        AgentSlot("b", "b", {"py": 0.5}, load=0, max_concurrency=1, ejected=True),
        AgentSlot("c", "c", {"py": 0.5}, load=0, max_concurrency=1),
    ]
    for name in STRATEGIES:
        d = make(name).choose(task(), slots)
        assert d.agent_id == "c", name
        reasons = [r["reason"] for r in d.explanation["rejected"]]
        assert reasons == ["status PAUSED is not routable", "ejected by outlier detection"]


def _pooled_strength(spread: float, seed: int) -> float:
    """The prior strength a newcomer gets from 20 peers whose true success
    rates spread by ``spread`` around 0.7 (300 outcomes each)."""
    rng = np.random.default_rng(seed)
    learning = LearningState()
    for i in range(20):
        p = float(np.clip(0.7 + rng.normal(0.0, spread), 0.02, 0.98))
        learning.agent_row(f"a{i}", group="g")
        for _ in range(300):
            learning.observe(f"a{i}", "code", success=bool(rng.random() < p), now=1.0)
    new = learning.agent_row("new", group="g")
    return float(learning.view(np.array([new]), "code", 1.0).prior[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prior_strength_is_estimated_from_the_peers_spread(seed: int) -> None:
    # Peers that agree make a strong prior, peers that differ a weak one.
    # Beta(m p, m (1 - p)) has sd sqrt(p (1 - p) / (m + 1)): spread 0.2 is m ~ 4.
    alike = _pooled_strength(0.02, seed)
    apart = _pooled_strength(0.2, seed)
    assert alike >= 30.0
    assert 1.0 <= apart <= 15.0  # 20 peers: the spread itself is estimated roughly


def test_prior_strength_falls_back_without_enough_peers() -> None:
    learning = LearningState(prior_strength=4.0)
    learning.agent_row("a", group="g")
    for _ in range(30):
        learning.observe("a", "code", success=True, now=1.0)
    new = learning.agent_row("new", group="g")
    assert learning.view(np.array([new]), "code", 1.0).prior[0] == 4.0
    off = LearningState(prior_strength=0.0)
    off.observe("a", "code", success=True, now=1.0)
    assert off.view(np.array([off.agent_row("b")]), "code", 1.0).prior[0] == 0.0


def _group_with_a_busy_star(learning: LearningState) -> None:
    """One peer with a long record at 0.95 (routing sends it most of the work)
    and four with short ones at 0.5: the pooled record is mostly the star's."""
    learning.agent_row("star", group="g")
    for i in range(950):
        learning.observe("star", "code", success=i < 900, now=1.0)
    for k in range(4):
        learning.agent_row(f"p{k}", group="g")
        for i in range(20):
            learning.observe(f"p{k}", "code", success=i < 10, now=1.0)


def test_peers_rate_is_the_mean_of_their_rates_not_their_pooled_record() -> None:
    learning = LearningState(prior_strength=4.0)
    _group_with_a_busy_star(learning)
    pooled = (900 + 40) / (950 + 80)
    assert pooled > 0.9  # what the pooled record would promise a newcomer
    new = learning.agent_row("new", group="g")
    est = learning.view(np.array([new]), "code", 1.0)
    # Each peer counts by its precision, at most the between-peer spread: the star
    # counts more than one short record, far less than its 950 outcomes.
    assert 0.55 < est.peer_success[0] < 0.8
    assert est.success[0] < 0.8
    assert learning.success_mean("new", "code", 1.0) == pytest.approx(est.success[0])


def test_an_agents_own_record_is_left_out_of_its_peers_rate() -> None:
    learning = LearningState(prior_strength=4.0)
    _group_with_a_busy_star(learning)
    rows = np.array([learning.agent_row("star"), learning.agent_row("p0")])
    est = learning.view(rows, "code", 1.0)
    assert est.peer_success[0] == pytest.approx(0.5)  # the star's peers: four at 0.5
    assert est.peer_success[1] > 0.55  # p0's peers include the star
    for i, agent in enumerate(("star", "p0")):
        assert learning.success_mean(agent, "code", 1.0) == pytest.approx(est.success[i])


def test_long_records_count_alike_in_the_peers_rate() -> None:
    # Beyond the spread between peers, more outcomes add no weight: two peers with
    # 2,000 and 200 outcomes count almost alike (the pooled rate would be ~0.86).
    learning = LearningState(prior_strength=4.0, empirical_prior=False)
    learning.agent_row("a", group="g")
    learning.agent_row("b", group="g")
    for i in range(2000):
        learning.observe("a", "code", success=i % 10 != 0, now=1.0)
    for i in range(200):
        learning.observe("b", "code", success=i % 2 == 0, now=1.0)
    new = learning.agent_row("new", group="g")
    assert 0.68 < learning.view(np.array([new]), "code", 1.0).peer_success[0] < 0.74


def test_a_loaded_cell_counts_in_the_peers_rate_at_once() -> None:
    # Another replica's outcomes arrive through load_cell (no outcome is counted
    # locally): the cached peers' rate and prior strength must not stay stale.
    learning = LearningState(prior_strength=4.0)
    _group_with_a_busy_star(learning)
    new = learning.agent_row("new", group="g")
    before = float(learning.view(np.array([new]), "code", 1.0).peer_success[0])
    for k in range(4):
        learning.load_cell(f"p{k}", "code", {"s": 190.0, "f": 10.0}, n=200, at=1.0)
    after = float(learning.view(np.array([new]), "code", 1.0).peer_success[0])
    assert before < 0.8 < after


def _peers_and_a_strong_agent(learning: LearningState) -> None:
    """Five peers at 0.5 on types x, y and z; "strong" at 0.9 on x and y and
    "plain" at 0.5 on x and y, neither of them tried at z yet."""
    for k in range(5):
        learning.agent_row(f"p{k}", group="g")
        for kind in ("x", "y", "z"):
            for i in range(40):
                learning.observe(f"p{k}", kind, success=i % 2 == 0, now=1.0)
    for agent, wins in (("strong", 36), ("plain", 20)):
        learning.agent_row(agent, group="g")
        for kind in ("x", "y"):
            for i in range(40):
                learning.observe(agent, kind, success=i < wins, now=1.0)


def test_an_agents_record_at_its_other_types_moves_its_prior() -> None:
    """Experience shared across task types: better than its peers at x and y,
    an agent starts z above them; an agent like its peers starts where they are."""
    learning = LearningState(prior_strength=4.0)
    _peers_and_a_strong_agent(learning)
    rows = np.array([learning.agent_row("strong"), learning.agent_row("plain")])
    est = learning.view(rows, "z", 1.0)
    assert est.agent_offset[0] > 0.8  # logits (0.9 against 0.5 is 2.2, shrunk)
    # "plain" sits a little below a group that counts "strong" in.
    assert -0.3 < est.agent_offset[1] < 0.0
    assert est.peer_success[0] > 0.7 > 0.5 > est.peer_success[1] > 0.4
    assert est.success[0] > est.success[1] + 0.2
    for i, agent in enumerate(("strong", "plain")):
        assert learning.success_mean(agent, "z", 1.0) == pytest.approx(est.success[i])
    # agent_spread = 0: no sharing across types; both start at their peers' rate.
    off = LearningState(prior_strength=4.0, agent_spread=0.0)
    _peers_and_a_strong_agent(off)
    est = off.view(np.array([off.agent_row("strong"), off.agent_row("plain")]), "z", 1.0)
    assert est.peer_success[0] == pytest.approx(est.peer_success[1])
    assert not est.agent_offset.any()


def test_a_types_own_record_is_left_out_of_its_offset() -> None:
    """The agent's outcomes at z count once, in its posterior: its offset at z
    comes from x and y alone, while z's outcomes now move its offset at x."""
    learning = LearningState(prior_strength=4.0)
    _peers_and_a_strong_agent(learning)
    row = np.array([learning.agent_row("strong")])
    at_z = float(learning.view(row, "z", 1.0).agent_offset[0])
    at_x = float(learning.view(row, "x", 1.0).agent_offset[0])
    for i in range(100):  # poor at z (more than a refresh's worth of outcomes)
        learning.observe("strong", "z", success=i < 10, now=1.0)
    assert float(learning.view(row, "z", 1.0).agent_offset[0]) == pytest.approx(at_z, abs=0.05)
    assert float(learning.view(row, "x", 1.0).agent_offset[0]) < at_x - 0.3


def test_explanations_show_the_agent_offset() -> None:
    fleet = fleet_of(
        {"id": "strong", "capabilities": {"py": 0.5}, "capacity": 1, "limit": math.inf},
        {"id": "plain", "capabilities": {"py": 0.5}, "capacity": 1, "limit": math.inf},
    )
    learning = LearningState(prior_strength=4.0)
    _peers_and_a_strong_agent(learning)
    strategy = make("learned", learning=learning, mode=Mode.ACTIVE, clock=lambda: 2.0, seed=1)
    d = strategy.select(task(type="z"), fleet)
    scores = {c["name"]: c["score"] for c in d.explanation["candidates"]}
    assert scores["strong"]["agent_offset"] > 0.8
    assert -0.3 < scores["plain"]["agent_offset"] < 0.0
    assert d.agent_id == "strong"

"""The routing engine a replica keeps in memory: policies, the learning state,
outlier ejection, and the Router the dispatcher and pusher call.

Routing never queries the database: policies and learned statistics are read
from memory, which commits on this replica update at once (outcomes, policy
changes) and a loop refreshes from the database every
``routing.refresh_interval`` seconds (other replicas' outcomes, a restart).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ymera.config import RoutingSettings
from ymera.db.database import Database
from ymera.kit.clock import Clock
from ymera.routing.fleet import Fleet
from ymera.routing.health import KEPT_AFTER_EJECTION, OutlierDetector
from ymera.routing.learning.model import LearningState, Mode, RewardWeights
from ymera.routing.learning.prices import solve_plan
from ymera.routing.learning.stats import add_outcome
from ymera.routing.strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy, make
from ymera.routing.strategies.base import RoundLoads
from ymera.routing.strategies.learned import Learned
from ymera.routing.strategies.least_loaded import LeastLoaded
from ymera.routing.types import AgentSlot, Decision, Round, TaskView

GLOBAL = "*"


@dataclass(frozen=True)
class Policy:
    scope: str = GLOBAL
    strategy: str = DEFAULT_STRATEGY
    mode: Mode = Mode.PASSIVE
    params: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None

    def reward_weights(self) -> RewardWeights:
        w = self.params.get("reward_weights") or {}
        return RewardWeights(**{k: float(v) for k, v in w.items()})


def peer_group(agent_type: str | None, capabilities: dict[str, float] | list[str]) -> str:
    """Agents with the same type and capabilities are peers (experience sharing)."""
    return f"{agent_type or ''}|{','.join(sorted(capabilities))}"


class RoutingEngine:
    name = "policy"

    def __init__(self, cfg: RoutingSettings, clock: Clock) -> None:
        self.cfg = cfg
        self.clock = clock
        self.learning = LearningState(
            half_life=cfg.learning_half_life, prior_strength=cfg.prior_strength
        )
        self.detector = OutlierDetector(
            consecutive=cfg.ejection_consecutive_failures,
            window=cfg.ejection_window,
            alpha=cfg.ejection_alpha,
            typed_alpha=cfg.ejection_typed_alpha,
            base_seconds=cfg.ejection_base_seconds,
            max_seconds=cfg.ejection_max_seconds,
        )
        self.policies: dict[str, Policy] = {GLOBAL: Policy()}
        # What ejections forgot that the store does not know yet: agent id ->
        # the share of its statistics kept (``learning.service`` writes it).
        self.forgotten: dict[str, float] = {}
        self._strategies: dict[str, tuple[Policy, Strategy]] = {}
        self._grouped: set[str] = set()
        self._default = LeastLoaded()
        # Set when a learned strategy's opportunity prices are due: the
        # replica's prices loop solves them off the decision path
        # (:meth:`solve_prices`; the loop gives it an event of its own loop).
        self.prices_due = asyncio.Event()

    def now(self) -> float:
        return self.clock.now().timestamp()

    # --- policies ---------------------------------------------------------------------

    def policy_for(self, task_type: str) -> Policy:
        return self.policies.get(task_type) or self.policies[GLOBAL]

    def set_policies(self, policies: list[Policy]) -> None:
        table = {GLOBAL: Policy()}
        table.update({p.scope: p for p in policies})
        self.policies = table

    def strategy_for(self, policy: Policy) -> Strategy:
        cached = self._strategies.get(policy.scope)
        if cached is not None and cached[0] == policy:
            return cached[1]
        params = {k: v for k, v in policy.params.items() if k != "reward_weights"}
        if policy.strategy == "learned":
            strategy = make(
                "learned",
                learning=self.learning,
                mode=policy.mode,
                weights=policy.reward_weights(),
                clock=self.now,
                prices_due=self._prices_are_due,
                **params,
            )
        else:
            strategy = STRATEGIES[policy.strategy](**params)
        self._strategies[policy.scope] = (policy, strategy)
        return strategy

    def _prices_are_due(self) -> None:
        self.prices_due.set()

    def _prices_to_solve(self) -> list[Learned]:
        return [
            s for _, s in self._strategies.values() if isinstance(s, Learned) and s.prices.due()
        ]

    async def solve_prices(self) -> int:
        """Solve the opportunity prices of every learned strategy that has them
        due (``ymera.routing.learning.prices``), off the decision path: the
        plan's inputs are read here, between claims, and the linear program
        (~15 ms at a few hundred agents) is solved on a thread, the event loop
        free meanwhile (HiGHS releases the GIL); decisions use the previous
        prices until then. Returns how many were solved."""
        solved = 0
        for strategy in self._prices_to_solve():
            prices = strategy.prices
            columns = prices.plan(strategy.learning, strategy.plan_weights(), self.now())
            if columns:
                prices.adopt(await asyncio.to_thread(solve_plan, columns, prices.capacity))
            solved += 1
        return solved

    def solve_prices_now(self) -> int:
        """:meth:`solve_prices` without a thread (where no event loop runs)."""
        solved = 0
        for strategy in self._prices_to_solve():
            strategy.prices.solve(strategy.learning, strategy.plan_weights(), self.now())
            solved += 1
        return solved

    # --- the Router -------------------------------------------------------------------

    def choose(self, task: TaskView, agents: list[AgentSlot]) -> Decision:
        """One decision among ``agents`` (a round of one: :class:`EngineRound`)."""
        return EngineRound(self, agents).choose(task)

    def round(self, agents: list[AgentSlot]) -> Round:
        """A claim's decisions (:class:`EngineRound`): the agents' arrays are built
        once, not per decision."""
        return EngineRound(self, agents)

    def _group(self, agents: list[AgentSlot]) -> None:
        for slot in agents:
            if slot.agent_id not in self._grouped:
                self._grouped.add(slot.agent_id)
                self.learning.agent_row(
                    slot.agent_id, group=peer_group(slot.agent_type, slot.capabilities)
                )

    # --- learning -----------------------------------------------------------------------

    def apply(self, outcomes: list[Any]) -> None:
        """Committed outcomes (``hooks.Outcome``): learn, and judge for ejection.

        A commit's outcomes of one (agent, type) are learned as one sum (a batch
        of results is hundreds of outcomes of a few agents); an ejection first
        learns what came before it, then forgets."""
        sums: dict[tuple[str, str], list[Any]] = {}
        # Expected rates: what is learned does not change until learn() runs, so
        # a commit's outcomes of one (agent, type, instant) share one.
        expected_rates: dict[tuple[str, str, float], float] = {}

        def learn() -> None:
            for (agent_id, task_type), (vals, count, at) in sums.items():
                self.learning.observe_sums(agent_id, task_type, vals, count=count, now=at)
            sums.clear()
            expected_rates.clear()

        instants: dict[Any, float] = {}  # a commit's outcomes share a few instants
        for o in outcomes:
            at = instants.get(o.at)
            if at is None:
                at = instants[o.at] = o.at.timestamp()
            acc = sums.get((o.agent_id, o.task_type))
            if acc is None:
                acc = sums[(o.agent_id, o.task_type)] = [{}, 0, at]
            elif at > acc[2]:
                acc[2] = at
            acc[1] += add_outcome(acc[0], o.success, o.latency, o.feedback)
            if o.success is not None:
                # An outcome is judged at the rate learned for its task's type.
                key = (o.agent_id, o.task_type, at)
                expected = expected_rates.get(key)
                if expected is None:
                    expected = self.learning.success_mean(o.agent_id, o.task_type, at)
                    expected_rates[key] = expected
                verdict = self.detector.record(o.agent_id, o.success, at, expected=expected)
                if verdict == "ejected":
                    learn()
                    self.learning.forget(o.agent_id, keep=KEPT_AFTER_EJECTION, now=at)
                    kept = self.forgotten.get(o.agent_id, 1.0)
                    self.forgotten[o.agent_id] = kept * KEPT_AFTER_EJECTION
        learn()

    def forgetting_stored(self, written: dict[str, float]) -> None:
        """``written`` (agent id -> share kept) is in the store now; an agent
        ejected again since keeps the rest to be written."""
        for agent_id, keep in written.items():
            pending = self.forgotten.pop(agent_id, None)
            if pending is not None and pending != keep:
                self.forgotten[agent_id] = pending / keep

    def restart_strategies(self) -> None:
        """Build the strategies afresh on their next decision (after everything
        learned was reset: what they keep of their own is indexed by its rows)."""
        self._strategies.clear()

    def replace_learning(self, state: LearningState) -> None:
        """Route on ``state`` (reloaded from the store) from now on; what
        ejections forgot that the store does not know yet is forgotten in it too.

        The learned strategies stay (with what they keep of their own: the
        opportunity prices and the arrivals they are solved from, which take a
        few hundred decisions to gather) and read ``state``: its first rows must
        be the agents of the state it replaces, in the same order
        (``learning.service.load_state(order=...)``)."""
        now = self.now()
        for agent_id, keep in self.forgotten.items():
            state.forget(agent_id, keep=keep, now=now)
        known = self.learning.agent_ids
        if state.agent_ids[: len(known)] != known:
            self.restart_strategies()  # rows moved: the strategies start afresh
        for _, strategy in self._strategies.values():
            if isinstance(strategy, Learned):
                strategy.learning = state
        self.learning = state
        self._grouped.clear()


# Up to this many agents in a claim the default policy ranks the slots in plain
# Python; beyond, on arrays (measured: 16 agents 138 us against 235 per
# decision, 64 agents 544 against 262, 1,024 agents 5.2 ms against 0.24).
PLAIN_MAX_AGENTS = 32


class EngineRound(RoundLoads):
    """The engine's decisions over one claim's agents. The default policy ranks
    the slots with room in plain Python at each decision when they are few
    (``PLAIN_MAX_AGENTS``); every other strategy, and the default one over
    more agents, ranks one :class:`Fleet` built at its
    first decision and kept in step with the loads as tasks are assigned, so a
    decision among thousands of agents is a few array operations, not a
    Python loop over every agent (nor is ejection: only the agents the
    detector holds are looked at)."""

    def __init__(self, engine: RoutingEngine, agents: list[AgentSlot]) -> None:
        self.engine = engine
        self.by_id = {a.agent_id: a for a in agents}
        self.slots = [a for a in agents if a.free > 0]
        self._fleet: Fleet | None = None
        self._grouped_for: LearningState | None = None
        # Agents marked ejected (by this round, or by an earlier one on the same
        # slots): looked at again at each decision.
        self._marked: set[str] = {a.agent_id for a in agents if a.ejected}

    def _fleet_for(self, learned: bool) -> Fleet:
        if self._fleet is None:
            self._fleet = Fleet.from_slots(self.slots)
        if learned and self._grouped_for is not self.engine.learning:
            self.engine._group(self.slots)
            self._grouped_for = self.engine.learning
        return self._fleet

    def _mark(self, agent_id: str, ejected: bool) -> None:
        slot = self.by_id[agent_id]
        slot.ejected = ejected
        if self._fleet is not None:
            row = self._fleet.by_key.get(agent_id)
            if row is not None:
                self._fleet.ejected[row] = ejected
        if ejected:
            self._marked.add(agent_id)
        else:
            self._marked.discard(agent_id)

    def _mark_ejected(self) -> bool:
        """Mark the agents outlier detection holds back now; True if any."""
        detector = self.engine.detector
        if not detector.held and not self._marked:
            return False
        now = self.engine.now()
        for agent_id in (detector.held & self.by_id.keys()) | self._marked:
            slot = self.by_id[agent_id]
            self._mark(agent_id, detector.blocks(agent_id, now, slot.load))
        return bool(self._marked)

    def _decide(self, policy: Policy, task: TaskView) -> Decision:
        default = policy.strategy == DEFAULT_STRATEGY and not policy.params
        if default and len(self.slots) <= PLAIN_MAX_AGENTS:
            return self.engine._default.choose(task, [a for a in self.slots if a.free > 0])
        fleet = self._fleet_for(policy.strategy == "learned")
        strategy = self.engine._default if default else self.engine.strategy_for(policy)
        return strategy.select(task, fleet)

    def choose(self, task: TaskView) -> Decision:
        policy = self.engine.policy_for(task.type)
        ejected = self._mark_ejected()
        decision = self._decide(policy, task)
        if decision.agent_id is None and ejected:
            # Panic mode (as Envoy's): when ejection leaves no agent at all, route
            # as if nobody were ejected rather than hold the work (the next
            # decision marks them again).
            for agent_id in list(self._marked):
                self._mark(agent_id, False)
            decision = self._decide(policy, task)
            decision.explanation["panic"] = "every eligible agent is ejected: ejection ignored"
        if policy.scope != GLOBAL:
            decision.explanation["policy_scope"] = policy.scope
        return decision


_engines: weakref.WeakKeyDictionary[Database, RoutingEngine] = weakref.WeakKeyDictionary()


def bind(db: Database, engine: RoutingEngine) -> None:
    _engines[db] = engine


def engine_of(db: Any) -> RoutingEngine | None:
    return _engines.get(db) if isinstance(db, Database) else None

"""learned: Thompson sampling on what the learning engine knows, with load priced.

For each candidate: draw a success probability from its Beta posterior (its
peers' pooled prior plus its own record), value it (ACTIVE: the draw;
REINFORCEMENT: the weighted reward of the draw, the expected latency and the
expected feedback), and subtract the cost of the wait its in-flight work
implies: ``max(0, load + 1 - capacity) / capacity x expected service time``
seconds, priced at the latency weight. Skill alone would send everything to
the best agent and let its queue explode; load alone ignores skill.

The wait is priced as congestion, not only as the task's own delay: a task
that joins a queue also delays the work that queues behind it. For a queue at
utilisation ``rho`` the marginal cost of one more task's wait is
``(2 - rho) / (1 - rho)`` times its own wait (M/M/1: ``d(lambda Wq)/d lambda``
over ``Wq``; 2 on an idle fleet, 6 at 80% busy), with ``rho`` the share of the
candidates' slots that are busy (at most ``MAX_UTILISATION``).
``congestion = False`` prices the task's own wait only.

It also charges each candidate the opportunity cost of its time:
``opportunity x mu x expected service time``, with ``mu`` the shadow price of
the agent's slots in the fleet's fluid plan (``ymera.routing.learning.prices``:
zero for an agent with time to spare; for one whose time is contended, what
its time earns at the work only it does well), weighted 0.5 by default.

The draw is tempered: ``mean + exploration x (draw - mean)``, with
``exploration`` 0.5 by default (1 is plain Thompson sampling). Work spreads
over several agents anyway, as their queues fill and the wait is priced, and
each of those tasks teaches the learner; full-width draws on top of that
explore more than they earn (docs/benchmarks.md). A candidate nothing is
known of (no record, nothing pooled from peers) is drawn at full width when
others have a record.

Only plausible candidates are sampled: those whose optimistic value (success
``plausible`` posterior standard deviations above its mean) net of the wait
could still beat the best expected value net of the wait. Thompson sampling
over many candidates otherwise keeps sending work to agents that are clearly
worse: each has a small chance of a high draw, and over dozens of them those
chances add up (the maximum of many noisy draws favours the uncertain).
``plausible = 0`` samples every candidate.

In PASSIVE mode routing ignores what is learned (least loaded decides; the
estimates are still shown). Large candidate sets are cut to the best
``sample_size`` by posterior mean plus two standard deviations (the ones
Thompson sampling could pick) and a few drawn at random: a decision over
10,000 agents stays a handful of vector operations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ymera.routing.fleet import Fleet
from ymera.routing.learning.model import LearningState, Mode, RewardWeights
from ymera.routing.learning.prices import SlotPrices
from ymera.routing.learning.stats import beta_sd
from ymera.routing.strategies.base import Ranking, Strategy, load_ratio
from ymera.routing.types import TaskView

MAX_UTILISATION = 0.9  # congestion factor at most (2 - 0.9) / (1 - 0.9) = 11


class Learned(Strategy):
    name = "learned"

    def __init__(
        self,
        *,
        learning: LearningState | None = None,
        mode: Mode | str = Mode.ACTIVE,
        weights: RewardWeights | None = None,
        clock: Callable[[], float] = time.time,
        sample_size: int = 48,
        exploration: float = 0.5,
        refresh: int = 128,
        plausible: float = 1.5,
        congestion: bool = True,
        opportunity: float = 0.5,
        prices_due: Callable[[], None] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.learning = learning or LearningState()
        self.mode = Mode(mode)
        self.weights = weights or RewardWeights()
        self.clock = clock
        self.sample_size = sample_size
        self.exploration = exploration
        self.refresh = refresh
        self.plausible = plausible
        self.congestion = congestion
        self.opportunity = opportunity
        self.prices = SlotPrices()
        # Set (by the server's routing engine): called instead of solving the
        # prices on the decision path when they are due; the caller solves
        # them (``plan_weights``, ``SlotPrices.plan``) off it.
        self.prices_due = prices_due
        # Per task shape: the shortlist's learning rows, and decisions until refreshed.
        self._shortlists: dict[tuple[Any, ...], list[Any]] = {}

    def _rows(self, fleet: Fleet) -> np.ndarray:
        """Learning rows of the fleet's agents (registered on first sight)."""
        key = ("learned", id(self.learning), self.learning.version, fleet.version)
        rows = fleet.cache.get(key)
        if rows is None:
            rows = np.fromiter(
                (self.learning.agent_row(a) for a in fleet.ids), dtype=np.int64, count=len(fleet)
            )
            fleet.cache[("learned", id(self.learning), self.learning.version, fleet.version)] = rows
        out: np.ndarray = rows
        return out

    def _fleet_rows_of(self, fleet: Fleet) -> np.ndarray:
        """Per learning row, the fleet's row of that agent (-1: not in the fleet)."""
        key = ("learned_inverse", id(self.learning), self.learning.version, fleet.version)
        inverse = fleet.cache.get(key)
        if inverse is None:
            lrows = self._rows(fleet)
            inverse = np.full(int(lrows.max()) + 1 if len(lrows) else 0, -1, dtype=np.int64)
            inverse[lrows] = np.arange(len(lrows))
            fleet.cache[key] = inverse
        out: np.ndarray = inverse
        return out

    def _shortlist(
        self, rows: np.ndarray, lrows: np.ndarray, task: TaskView, fleet: Fleet, now: float
    ) -> np.ndarray:
        """Positions worth sampling when there are too many candidates: the best
        by an optimistic bound on success (mean + 2 sd; the ones Thompson
        sampling could pick), kept per task shape (as learning rows: the list
        outlives the fleet, which the server builds per claim) and refreshed
        every ``refresh`` decisions, that are still candidates; plus a few at
        random."""
        key = (task.type, tuple(task.required_capabilities), task.agent_type)
        cached = self._shortlists.get(key)
        if cached is None or cached[1] <= 0:
            bound = self.learning.success_bounds(lrows, task.type, now)
            size = min(2 * self.sample_size, len(rows) - 1)
            cached = [np.sort(lrows[np.argpartition(-bound, size)[:size]]), self.refresh]
            self._shortlists[key] = cached
        cached[1] -= 1
        inverse = self._fleet_rows_of(fleet)
        top_l = cached[0]
        top_rows = np.sort(inverse[top_l[top_l < len(inverse)]])
        top_rows = top_rows[top_rows >= 0]
        pos = np.minimum(np.searchsorted(rows, top_rows), len(rows) - 1)
        top = pos[rows[pos] == top_rows]  # those still candidates
        # Random probes (with replacement: no permutation of the whole set).
        extra = self.rng.integers(0, len(rows), size=self.sample_size // 4)
        # Sorted, without repeats (np.unique's own way costs 3x as much here).
        both = np.sort(np.concatenate([top, extra]))
        out: np.ndarray = both[np.concatenate(([True], both[1:] != both[:-1]))]
        return out

    def rank(self, task: TaskView, fleet: Fleet, rows: np.ndarray) -> Ranking:
        now = self.clock()
        lrows = self._rows(fleet)[rows]
        keep: np.ndarray | None = None
        if len(rows) > self.sample_size * 2 and self.mode is not Mode.PASSIVE:
            keep = self._shortlist(rows, lrows, task, fleet, now)
            lrows = lrows[keep]
        sub = rows if keep is None else rows[keep]
        est = self.learning.view(lrows, task.type, now)
        cap = np.maximum(fleet.capacity[sub], 1)
        queued = np.maximum(fleet.load[sub] + 1 - cap, 0)
        wait = queued / cap * est.latency
        w = self.weights
        extra: dict[str, Any] = {"learning_mode": self.mode.value}
        parts: dict[str, np.ndarray] = {
            "success_mean": est.success,
            "latency_expected": est.latency,
            "wait_expected": wait,
            "observations": est.n,
            "pooled_prior": est.prior,
            "peer_success": est.peer_success,
            "agent_offset": est.agent_offset,
        }
        if self.mode is Mode.PASSIVE:
            ratio = load_ratio(fleet, sub)
            chosen = int(np.argmin(ratio))
            parts = {"score": 1.0 - ratio, "load_ratio": ratio, **parts}
            why = "PASSIVE learning: least loaded (what is learned is recorded, not used)"
            return Ranking(self._full(keep, chosen), parts, why, extra, subset=keep)
        mean = est.success
        # A candidate nothing is known of (no record, nothing pooled) beside
        # others with a record is drawn at full width, or a newcomer without
        # peers would wait for the others to fill up.
        unknown = (est.weight <= 0) & (est.prior <= 0)
        width = np.where(unknown & bool((est.weight > 0).any()), 1.0, self.exploration)
        draw = mean + width * (self.rng.beta(est.alpha, est.beta) - mean)
        if self.mode is Mode.REINFORCEMENT:
            scale = w.success
            rest = -w.latency * est.latency + w.feedback * est.feedback
        else:
            scale, rest = 1.0, np.zeros(len(mean))
        value = scale * draw + rest
        factor = congestion_factor(fleet.load[sub], cap) if self.congestion else 1.0
        extra["queue_price"] = factor
        cost = w.latency * factor * wait
        if self.opportunity:
            opportunity = self._opportunity_cost(task, lrows, cap, est.latency, now)
            cost = cost + opportunity
            parts["opportunity_cost"] = opportunity
        score = value - cost
        if self.plausible:
            expected = scale * mean + rest - cost
            upper = expected + scale * self.plausible * beta_sd(est.alpha, est.beta)
            score = np.where(upper >= expected.max(), score, -np.inf)
            parts["upper_bound"] = upper
        chosen = int(np.argmax(score))
        parts = {
            "score": score,
            "value": value,
            "load_cost": cost,
            "sampled_success": draw,
            **parts,
        }
        why = (
            "highest sampled reward net of its queue's wait among the plausible (Thompson sampling)"
            if self.mode is Mode.REINFORCEMENT
            else "highest sampled success net of its queue's wait among the plausible"
            " (Thompson sampling)"
        )
        return Ranking(self._full(keep, chosen), parts, why, extra, subset=keep)

    def _opportunity_cost(
        self, task: TaskView, lrows: np.ndarray, cap: np.ndarray, latency: np.ndarray, now: float
    ) -> np.ndarray:
        """What the candidates' time is worth to the rest of the fleet's work
        (``ymera.routing.learning.prices``) for the time this task would take,
        weighted by ``opportunity``."""
        prices = self.prices
        prices.note(task.type, lrows, cap, now)
        if prices.due():
            if self.prices_due is not None:
                self.prices_due()  # solved elsewhere; these prices until then
            else:
                prices.solve(self.learning, self.plan_weights(), now)
        # (note() sized the prices for these rows.)
        out: np.ndarray = self.opportunity * prices.prices[lrows] * latency
        return out

    def plan_weights(self) -> RewardWeights:
        """What the fluid plan values a task done by: the reward weights in
        REINFORCEMENT mode, success alone otherwise."""
        if self.mode is Mode.REINFORCEMENT:
            return self.weights
        return RewardWeights(success=1.0, latency=0.0, feedback=0.0)

    @staticmethod
    def _full(keep: np.ndarray | None, pos: int) -> int:
        return pos if keep is None else int(keep[pos])


def congestion_factor(load: np.ndarray, capacity: np.ndarray) -> float:
    """What one more second of queueing costs, in seconds of the task's own wait:
    ``(2 - rho) / (1 - rho)`` at utilisation ``rho`` (busy slots over slots,
    at most ``MAX_UTILISATION``). In an M/M/1 queue the waiting work grows as
    ``Lq = rho^2 / (1 - rho)``; its derivative in the arrival rate over one
    task's wait ``Wq`` is that ratio: the task's own wait plus the delay it
    passes on to the work that queues behind it."""
    slots = float(capacity.sum())
    if slots <= 0:
        return 2.0
    rho = min(float(np.minimum(load, capacity).sum()) / slots, MAX_UTILISATION)
    return (2.0 - rho) / (1.0 - rho)

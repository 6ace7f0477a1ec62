"""What an agent's time is worth: shadow prices from the fleet's fluid plan.

Routing each task to the agent with the best value net of its wait is greedy:
it sends a task to a strong agent that is free now even when that agent is the
only strong one at another, frequent, task type, whose tasks then go to weaker
agents. The fluid plan sees the whole fleet at once. Over the task types that
arrive (rate ``lambda_t`` each, measured over the last decisions) and the
agents that could take them (capacity ``c_a`` slots, expected service time
``S_at``, expected value ``v_at`` of a task done, from what is learned), it
is the linear program

    maximise   sum x_at v_at
    subject to sum_a x_at + overflow_t = lambda_t   (every task goes somewhere)
               sum_t x_at S_at <= c_a               (an agent's slots: busy at most always)

with ``x_at`` the rate of type-t tasks sent to agent a, and ``overflow`` the
tasks no capacity is left for, at a cost higher than any value. The dual value
``mu_a`` of an agent's capacity constraint is what one more second of its slot
time would earn the fleet: zero for an agent with time to spare, positive for
one whose time is contended. A task that would occupy agent a for ``S_at``
seconds costs the fleet ``mu_a x S_at`` of value elsewhere: the learned
strategy subtracts that opportunity cost from the agent's score.

Measured in the fleet simulator: the greedy oracle (true parameters) with
these prices earns +127 +- 16 reward per 20,000 tasks more than without (20
seeds), priced twice as high 940 less; the learned strategy with the prices
from its estimates at weight 0.5 earns +99 +- 22 (docs/benchmarks.md).

A plan that keeps the agents more than ``MAX_BUSY`` busy (or cannot place all
the work) sets no prices: near saturation every slot would be priced at what
the last task squeezed in is worth, and an agent the plan leaves time to has
none once queues form.

The program is solved by HiGHS (scipy) every ``refresh`` decisions (once that
many arrivals are known), over the task types seen in the last ``window``
decisions and, per type, the agents scored for it in that window (at most
``max_agents`` per type, the most recently seen), so its size does not grow
with the registered fleet.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np
import structlog
from scipy.optimize import linprog  # type: ignore[import-untyped]
from scipy.sparse import coo_matrix  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from ymera.routing.learning.model import LearningState, RewardWeights


log = structlog.get_logger("ymera.routing.prices")

# A task type in the plan: its name, arrival rate per second, and the learning
# rows of the agents scored for it with their values and service times.
Column = tuple[str, float, np.ndarray, np.ndarray, np.ndarray]

# Plans that keep the agents busier than this (share of all their slot time)
# set no prices.
MAX_BUSY = 0.9


class SlotPrices:
    """Per learning row, the opportunity cost of one second of the agent's time."""

    def __init__(self, *, window: int = 2000, refresh: int = 250, max_agents: int = 256) -> None:
        self.window = window
        self.refresh = refresh
        self.max_agents = max_agents
        self.decisions = 0
        self.solved_at = -refresh  # due at once
        self.prices = np.zeros(0)
        self._arrivals: deque[tuple[float, str]] = deque(maxlen=window)
        # Per task type: the decision index each learning row was last scored at.
        self._seen: dict[str, np.ndarray] = {}
        self._capacity = np.zeros(0)

    def _grow(self, size: int) -> None:
        if size > len(self._capacity):
            grow = max(size, 2 * len(self._capacity))
            self._capacity = np.concatenate([self._capacity, np.zeros(grow - len(self._capacity))])
            self.prices = np.concatenate([self.prices, np.zeros(grow - len(self.prices))])
            for task_type, seen in self._seen.items():
                self._seen[task_type] = np.concatenate([seen, np.full(grow - len(seen), -1)])

    def note(self, task_type: str, rows: np.ndarray, capacity: np.ndarray, now: float) -> None:
        """One decision: a task of ``task_type`` arrived at ``now``; learning rows
        ``rows`` (with ``capacity`` slots each) were scored for it."""
        self.decisions += 1
        self._arrivals.append((now, task_type))
        if len(rows):
            self._grow(int(rows.max()) + 1)
            seen = self._seen.get(task_type)
            if seen is None:
                seen = self._seen[task_type] = np.full(len(self._capacity), -1)
            seen[rows] = self.decisions
            self._capacity[rows] = capacity

    def due(self) -> bool:
        return self.decisions - self.solved_at >= self.refresh

    def solve(self, learning: LearningState, weights: RewardWeights, now: float) -> None:
        """Recompute the prices from what is learned now (see the module doc)."""
        columns = self.plan(learning, weights, now)
        if columns:
            self.adopt(solve_plan(columns, self._capacity))

    def plan(
        self, learning: LearningState, weights: RewardWeights, now: float
    ) -> list[Column] | None:
        """The linear program's inputs from what is learned now, per task type
        seen (its arrival rate, and the rows, values and service times of the
        agents scored for it), or None when there is nothing to plan yet; the
        prices count as solved at this decision. :func:`solve_plan` solves them
        (anywhere: it reads only its arguments) and :meth:`adopt` takes the
        answer."""
        self.solved_at = self.decisions
        if len(self._arrivals) < min(self.refresh, self.window):
            return None  # too few arrivals to tell their rates
        span = self._arrivals[-1][0] - self._arrivals[0][0]
        if span <= 0:
            return None
        counts: dict[str, int] = {}
        for _, task_type in self._arrivals:
            counts[task_type] = counts.get(task_type, 0) + 1
        oldest = self.decisions - self.window
        columns: list[Column] = []
        for task_type, count in counts.items():
            seen = self._seen.get(task_type)
            if seen is None:
                continue
            rows = np.flatnonzero((seen > oldest) & (seen >= 0))
            if len(rows) > self.max_agents:
                rows = rows[np.argsort(-seen[rows], kind="stable")[: self.max_agents]]
            if not len(rows):
                continue
            est = learning.view(rows, task_type, now)
            value = weights.success * est.success - weights.latency * est.latency
            if weights.feedback:
                value = value + weights.feedback * est.feedback
            finite = np.isfinite(value) & np.isfinite(est.latency) & (est.latency > 0)
            if not finite.all():  # (no estimate to plan with: left out)
                rows, value, latency = rows[finite], value[finite], est.latency[finite]
            else:
                latency = est.latency
            if not len(rows):
                continue
            # n arrivals span n - 1 intervals: the rate is (n - 1) / span, shared
            # among the types by their counts.
            rate = count / len(self._arrivals) * (len(self._arrivals) - 1) / span
            columns.append((task_type, rate, rows, value, latency))
        return columns or None

    @property
    def capacity(self) -> np.ndarray:
        """Slots per learning row, as last scored (a copy)."""
        return self._capacity.copy()

    def adopt(self, prices: np.ndarray) -> None:
        """Prices solved from an earlier :meth:`plan` (rows added since: none)."""
        out = np.zeros(len(self._capacity))
        size = min(len(out), len(prices))
        out[:size] = prices[:size]
        self.prices = out


def solve_plan(columns: list[Column], capacity: np.ndarray) -> np.ndarray:
    """The prices of a plan (:meth:`SlotPrices.plan`); zeros if the solver
    fails (a routing decision never fails for its prices)."""
    try:
        return _shadow_prices(columns, capacity)
    except Exception as exc:
        log.warning("opportunity_prices_failed", error=repr(exc))
        return np.zeros(len(capacity))


def _shadow_prices(
    columns: list[Column],
    capacity: np.ndarray,
    *,
    max_busy: float = MAX_BUSY,
) -> np.ndarray:
    """The duals of the agents' capacity constraints (see the module doc), per
    learning row (zero for rows in no column, and for every row when the plan
    keeps the agents more than ``max_busy`` busy)."""
    agents = np.unique(np.concatenate([c[2] for c in columns]))
    index = np.full(int(agents.max()) + 1, -1)
    index[agents] = np.arange(len(agents))
    values = np.concatenate([c[3] for c in columns])
    penalty = max(abs(float(np.max(values))), 1.0) * 2.0 + 1.0  # worse than any assignment
    cost: list[np.ndarray] = []
    eq_rows: list[np.ndarray] = []
    ub_rows: list[np.ndarray] = []
    ub_vals: list[np.ndarray] = []
    demand = []
    for t, (_, rate, rows, value, service) in enumerate(columns):
        cost.append(-value)
        eq_rows.append(np.full(len(rows), t))
        ub_rows.append(index[rows])
        ub_vals.append(np.maximum(service, 1e-9))
        demand.append(rate)
    assigned = sum(len(c[2]) for c in columns)
    # One overflow variable per type (no capacity used).
    cost.append(np.full(len(columns), penalty))
    eq_rows.append(np.arange(len(columns)))
    c = np.concatenate(cost)
    a_eq = coo_matrix(
        (np.ones(len(c)), (np.concatenate(eq_rows), np.arange(len(c)))),
        shape=(len(columns), len(c)),
    ).tocsr()
    a_ub = coo_matrix(
        (np.concatenate(ub_vals), (np.concatenate(ub_rows), np.arange(assigned))),
        shape=(len(agents), len(c)),
    ).tocsr()
    slots = np.maximum(capacity[agents], 0.0)
    out = np.zeros(len(capacity))
    result = linprog(
        c,
        A_ub=a_ub,
        b_ub=slots,
        A_eq=a_eq,
        b_eq=np.asarray(demand),
        bounds=(0, None),
        method="highs",
    )
    if result.status != 0 or result.ineqlin is None:
        return out
    busy = float(np.sum(a_ub @ result.x)) / max(float(slots.sum()), 1e-9)
    if busy > max_busy:
        # Nearly no time to spare (or more work than time: overflow): every
        # slot is then priced at what the last task squeezed in is worth, and
        # an agent the plan leaves time to has none once queues form. Near
        # saturation the wait's price routes alone (in the simulator's cold
        # start, prices there tipped the fleet into long queues).
        return out
    out[agents] = np.maximum(-np.asarray(result.ineqlin.marginals), 0.0)
    return out

"""What the learning engine knows, in memory: per (agent, task type) discounted
sufficient statistics, kept in numpy arrays so a strategy reads a whole
candidate set in a few vector operations.

Per cell: successes and failures (a Beta posterior), the count, sum and sum of
squares of log latency (a log-normal estimate), and the count and sum of
quality feedback. With a half-life ``H`` every statistic decays by
``2^(-dt/H)`` (exponential forgetting, so a degrading agent is noticed); decay
is linear, so a peer group's sums decay exactly as the sum of its members'.

Experience sharing: an agent's prior for a task type is pooled from its peers
(agents with the same agent type and capabilities; when none of them has done
that type, every agent that has): ``min(m, peers' count)`` pseudo-observations
at the peers' success rate and latency. Its own observations add to that, so a
newcomer starts where its peers are, not at zero, and its own record takes
over as it grows.

How the peers' rate, the prior's strength and the agent's offset across task
types are estimated: ``ymera.routing.learning.priors``. The statistics'
layout and the posterior read from them: ``ymera.routing.learning.stats``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ymera.routing.learning.priors import AGENT_SPREAD, PeerPriors
from ymera.routing.learning.stats import (
    DEFAULT_LATENCY,
    FB_N,
    FB_SUM,
    LN_N,
    LN_SQ,
    LN_SUM,
    STAT_INDEX,
    STATS,
    Estimates,
    F,
    S,
    Table,
    beta_sd,
    outcome_sums,
    shift,
    success_bound,
)


class Mode(StrEnum):
    PASSIVE = "PASSIVE"  # record only; routing ignores what is learned
    ACTIVE = "ACTIVE"  # Thompson sampling on success, load priced
    REINFORCEMENT = "REINFORCEMENT"  # Thompson sampling on the weighted reward, load priced


@dataclass(frozen=True)
class RewardWeights:
    """reward = success x success_weight - latency seconds x latency_weight
    + feedback (0..1) x feedback_weight."""

    success: float = 1.0
    latency: float = 0.02
    feedback: float = 0.0


class LearningState(PeerPriors):
    """Discounted per (agent, task type) statistics with peer pooling."""

    def __init__(
        self,
        *,
        half_life: float | None = None,
        prior_strength: float = 4.0,
        empirical_prior: bool = True,
        agent_spread: float = AGENT_SPREAD,
    ) -> None:
        self.half_life = half_life
        self.prior_strength = prior_strength
        self.empirical_prior = empirical_prior
        self.agent_spread = agent_spread
        self._outcomes = 0  # outcomes learned, all types
        # (outcomes when computed, [type column, agent row] logit offsets)
        self._offsets: tuple[int, np.ndarray] | None = None
        # Per type column: (outcomes seen when estimated, strength per group, fleet-wide).
        self._strength: dict[int, tuple[int, np.ndarray, float]] = {}
        self._seen: dict[int, int] = {}  # outcomes learned per type column
        # Per type column: (outcomes seen, per group: sum of weights, sum of weighted
        # rates; per agent row: weight, rate), for the peers' mean rate.
        self._centres: dict[int, tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.agents: dict[str, int] = {}
        self.agent_ids: list[str] = []
        self.types: dict[str, int] = {}
        self.group_of: list[int] = []  # agent row -> peer group row
        self.groups: dict[str, int] = {"": 0}
        self.cells = Table(bounds=True)
        self.peer = Table()  # per (peer group, type)
        self.every = Table()  # per (0, type): the whole fleet
        self.version = 0  # bumped when rows are added (caches keyed by it)
        self._group_arr: np.ndarray | None = None

    # --- rows -----------------------------------------------------------------------

    def agent_row(self, agent_id: str, group: str | None = None) -> int:
        row = self.agents.get(agent_id)
        if row is None:
            row = self.agents[agent_id] = len(self.agent_ids)
            self.agent_ids.append(agent_id)
            self.group_of.append(0)
            self.cells.ensure(row + 1, max(1, len(self.types)))
            self.version += 1
        if group is not None:
            self.set_group(row, group)
        return row

    def set_group(self, row: int, group: str) -> None:
        g = self.groups.get(group)
        if g is None:
            g = self.groups[group] = len(self.groups)
            self.peer.ensure(g + 1, max(1, len(self.types)))
        old = self.group_of[row]
        if old == g:
            return
        # Move the agent's (decayed) statistics from its old group to the new one.
        for col in range(len(self.types)):
            if self.cells.n[col, row]:
                vals = self._decayed(self.cells, row, col, self.cells.t[col, row])
                self._add(self.peer, old, col, vals, self.cells.t[col, row], sign=-1.0, count=0)
                self._add(self.peer, g, col, vals, self.cells.t[col, row], sign=1.0, count=0)
        self.group_of[row] = g
        self._group_arr = None
        self._strength.clear()
        self._centres.clear()
        self._offsets = None

    def type_col(self, task_type: str) -> int:
        col = self.types.get(task_type)
        if col is None:
            col = self.types[task_type] = len(self.types)
            self.cells.ensure(max(1, len(self.agent_ids)), col + 1)
            self.peer.ensure(len(self.groups), col + 1)
            self.every.ensure(1, col + 1)
            self.version += 1
        return col

    # --- updates ----------------------------------------------------------------------

    def _factor(self, dt: np.ndarray | float) -> np.ndarray | float:
        if not self.half_life:
            return 1.0 if isinstance(dt, float) else np.ones_like(dt)
        return np.exp2(-np.maximum(dt, 0.0) / self.half_life)

    def _decayed(self, table: Table, r: int, c: int, now: float) -> dict[str, float]:
        k = float(self._factor(now - table.t[c, r]))
        return {name: float(table.data[i, c, r]) * k for i, name in enumerate(STATS)}

    def _add(
        self,
        table: Table,
        r: int,
        c: int,
        vals: dict[str, float],
        now: float,
        *,
        sign: float = 1.0,
        count: int = 1,
    ) -> None:
        k = float(self._factor(now - table.t[c, r])) if table.n[c, r] or table.t[c, r] else 1.0
        cell = table.data[:, c, r]
        cell *= k
        for name, v in vals.items():
            cell[STAT_INDEX[name]] += sign * v
        table.t[c, r] = max(now, table.t[c, r])
        table.n[c, r] += count
        if table.bound is not None:
            table.bound[c, r] = success_bound(1.0 + float(cell[S]), 1.0 + float(cell[F]))

    def observe(
        self,
        agent_id: str,
        task_type: str,
        *,
        success: bool | None = None,
        latency: float | None = None,
        feedback: float | None = None,
        now: float,
        group: str | None = None,
    ) -> None:
        """One outcome (success and latency) and/or one feedback score (0..1)."""
        vals, count = outcome_sums(success, latency, feedback)
        self.observe_sums(agent_id, task_type, vals, count=count, now=now, group=group)

    def observe_sums(
        self,
        agent_id: str,
        task_type: str,
        vals: dict[str, float],
        *,
        count: int,
        now: float,
        group: str | None = None,
    ) -> None:
        """Several outcomes of one (agent, type) at once: their summed statistics
        (:func:`outcome_sums` added up) and how many carried a success."""
        col = self.type_col(task_type)
        row = self.agent_row(agent_id, group)
        self._add(self.cells, row, col, vals, now, count=count)
        self._add(self.peer, self.group_of[row], col, vals, now, count=count)
        self._add(self.every, 0, col, vals, now, count=count)
        self._seen[col] = self._seen.get(col, 0) + count
        self._outcomes += count

    def load_cell(
        self, agent_id: str, task_type: str, values: dict[str, float], *, n: int, at: float
    ) -> None:
        """Install a persisted cell (values as of ``at``), replacing what was there."""
        col = self.type_col(task_type)
        row = self.agent_row(agent_id)
        old = self._decayed(self.cells, row, col, at)
        delta = {k: values.get(k, 0.0) - old[k] for k in STATS}
        prior_n = int(self.cells.n[col, row])
        self._strength.pop(col, None)  # estimated before this cell was installed
        self._centres.pop(col, None)
        self._offsets = None
        self._add(self.cells, row, col, delta, at, count=n - prior_n)
        self._add(self.peer, self.group_of[row], col, delta, at, count=n - prior_n)
        self._add(self.every, 0, col, delta, at, count=n - prior_n)

    def forget(self, agent_id: str, *, keep: float, now: float) -> None:
        """Keep only ``keep`` (0..1) of what is known of ``agent_id`` (after an
        ejection: a changed agent is judged by what it does next)."""
        row = self.agents.get(agent_id)
        if row is None:
            return
        for col in range(len(self.types)):
            if not self.cells.n[col, row]:
                continue
            vals = self._decayed(self.cells, row, col, now)
            drop = {k: -(1.0 - keep) * v for k, v in vals.items()}
            self._add(self.cells, row, col, drop, now, count=0)
            self._add(self.peer, self.group_of[row], col, drop, now, count=0)
            self._add(self.every, 0, col, drop, now, count=0)
        self._offsets = None

    def reset(self, *, agent_id: str | None = None, task_type: str | None = None) -> None:
        if agent_id is None and task_type is None:
            self.__init__(  # type: ignore[misc]
                half_life=self.half_life,
                prior_strength=self.prior_strength,
                empirical_prior=self.empirical_prior,
                agent_spread=self.agent_spread,
            )
            return
        rows = [self.agents[agent_id]] if agent_id is not None and agent_id in self.agents else []
        if agent_id is None:
            rows = list(range(len(self.agent_ids)))
        cols = list(range(len(self.types)))
        if task_type is not None:
            cols = [self.types[task_type]] if task_type in self.types else []
        now = float(self.cells.t.max()) if self.cells.t.size else 0.0
        for r in rows:
            for c in cols:
                if self.cells.n[c, r] or self.cells.t[c, r]:
                    self.load_cell(self.agent_ids[r], _key(self.types, c), {}, n=0, at=now)

    # --- reading ------------------------------------------------------------------------

    def view(self, rows: np.ndarray, task_type: str, now: float) -> Estimates:
        """Posterior estimates for agent (learning) rows on ``task_type`` at
        ``now``, peers pooled in."""
        col = self.type_col(task_type)
        own = self._column(self.cells, col, rows, now)
        peer = self._column(self.peer, col, self._groups()[rows], now) - own
        peer_n = peer[S] + peer[F]
        # Where no peer of the same group has done this type: pool the whole fleet.
        thin = peer_n < 0.5
        if thin.any():
            every = self._column(self.every, col, np.zeros(1, dtype=np.int64), now)
            peer = np.where(thin, every - own, peer)
            peer_n = peer[S] + peer[F]
        peer = np.maximum(peer, 0.0) if self.prior_strength else peer * 0.0
        peer_n = peer[S] + peer[F]
        strength = self.strengths(rows, col, thin)
        m = np.minimum(strength, peer_n)
        p_peer = self._peer_rates(rows, col, thin, (peer[S] + 0.5) / (peer_n + 1.0))
        offset = self.agent_offsets(rows, col)
        if offset is not None:
            p_peer = shift(p_peer, offset)
        alpha = 1.0 + m * p_peer + own[S]
        beta = 1.0 + m * (1.0 - p_peer) + own[F]
        # Log-normal latency: the peers' log latency as up to 2 pseudo-observations.
        has = peer[LN_N] > 1e-9
        safe = np.where(has, peer[LN_N], 1.0)
        peer_mu = np.where(has, peer[LN_SUM] / safe, math.log(DEFAULT_LATENCY))
        peer_sq = np.where(has, peer[LN_SQ] / safe, peer_mu * peer_mu)
        kp = np.clip(peer[LN_N], 1.0, 2.0)
        ln_n = own[LN_N] + kp
        mu = (own[LN_SUM] + kp * peer_mu) / ln_n
        var = np.maximum((own[LN_SQ] + kp * peer_sq) / ln_n - mu * mu, 0.0)
        return Estimates(
            alpha=alpha,
            beta=beta,
            latency=np.exp(mu + var / 2.0),
            log_mu=mu,
            log_sigma=np.sqrt(var),
            feedback=(own[FB_SUM] + 0.5) / (own[FB_N] + 1.0),
            feedback_n=own[FB_N],
            n=self.cells.n[col, rows],
            weight=own[S] + own[F],
            peer_n=peer_n,
            peer_success=p_peer,
            prior=m,
            agent_offset=offset if offset is not None else np.zeros(len(rows)),
        )

    def success_mean(self, agent_id: str, task_type: str, now: float) -> float:
        """The posterior mean success of one agent at one task type (peers pooled
        in, as :meth:`view` pools them): what it is expected to do, for judging
        an outcome (outlier ejection). Scalar arithmetic: a few microseconds."""
        col = self.type_col(task_type)
        row = self.agent_row(agent_id)
        own_s, own_f = self._sf(self.cells, row, col, now)
        peer_s, peer_f = self._sf(self.peer, self.group_of[row], col, now)
        peer_s, peer_f = peer_s - own_s, peer_f - own_f
        thin = peer_s + peer_f < 0.5
        if thin:
            every_s, every_f = self._sf(self.every, 0, col, now)
            peer_s, peer_f = every_s - own_s, every_f - own_f
        if self.prior_strength:
            peer_s, peer_f = max(peer_s, 0.0), max(peer_f, 0.0)
        else:
            peer_s = peer_f = 0.0
        peer_n = peer_s + peer_f
        m = min(self._strength_of(row, col, thin), peer_n)
        p_peer = (peer_s + 0.5) / (peer_n + 1.0)
        if not thin:
            p_peer = self._peer_rate(row, col, p_peer)
        table = self._offset_table()
        if table is not None and col < table.shape[0] and row < table.shape[1]:
            q = min(max(p_peer, 1e-3), 1.0 - 1e-3)
            x = math.log(q / (1.0 - q)) + float(table[col, row])
            p_peer = min(max(1.0 / (1.0 + math.exp(-x)), 1e-3), 1.0 - 1e-3)
        alpha = 1.0 + m * p_peer + own_s
        beta = 1.0 + m * (1.0 - p_peer) + own_f
        return alpha / (alpha + beta)

    def _sf(self, table: Table, r: int, c: int, now: float) -> tuple[float, float]:
        """Successes and failures of one cell, decayed to ``now``."""
        s, f = float(table.data[S, c, r]), float(table.data[F, c, r])
        if self.half_life:
            k = 2.0 ** (-max(now - float(table.t[c, r]), 0.0) / self.half_life)
            s, f = s * k, f * k
        return s, f

    def success_bounds(self, rows: np.ndarray, task_type: str, now: float) -> np.ndarray:
        """A cheap optimistic bound on success (own record, mean + 2 sd): what a
        shortlist of a large candidate set is cut by."""
        col = self.type_col(task_type)
        if not self.half_life and self.cells.bound is not None:  # kept per cell: a gather
            kept: np.ndarray = self.cells.bound[col, rows]
            return kept
        a = 1.0 + self.cells.data[S, col, rows]
        b = 1.0 + self.cells.data[F, col, rows]
        k = np.exp2(-np.maximum(now - self.cells.t[col, rows], 0.0) / self.half_life)
        a = 1.0 + (a - 1.0) * k
        b = 1.0 + (b - 1.0) * k
        out: np.ndarray = a / (a + b) + 2 * beta_sd(a, b)
        return out


def _key(index: dict[str, int], col: int) -> str:
    for k, v in index.items():
        if v == col:
            return k
    raise KeyError(col)

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

The peers' success rate is the mean of the peers' own rates, not their pooled
record: routing sends most work to the peers that do best, so the pooled
record is mostly theirs and would promise every newcomer the best peers'
rate. Each peer with a record counts with weight ``1 / (tau^2 + p (1 - p) /
n)`` (a random-effects mean, as in meta-analysis): by its outcomes while they
are few, and never more than the spread between peers (``tau^2 = p (1 - p) /
(m + 1)``, the spread the prior strength ``m`` stands for) once they are
many. The agent's own record is left out of its own prior.

The prior strength ``m`` is estimated from the data (empirical Bayes, method
of moments): when at least ``EB_MIN_AGENTS`` peers have ``EB_MIN_N``
outcomes of the type, the spread of their success rates beyond what binomial
noise explains is the spread of a Beta(m p, m (1 - p)) prior:
``m = p (1 - p) / between-agent variance - 1``, kept within
``[1, EB_MAX_STRENGTH]``. Peers that agree make a strong prior (a newcomer
is trusted to be like them); peers that differ a weak one. Without enough
peers ``prior_strength`` is used; ``prior_strength = 0`` turns sharing off.
Estimates are cached per type and refreshed after ``EB_REFRESH`` new
outcomes of the type.

Sharing across task types: an agent that does better than its peers at the
types it has done is likely to do better at the next one too. The prior for
(agent, type) is the peers' rate shifted, in logits, by the agent's offset:
the mean over its *other* types of how far its own (smoothed) rate sits above
or below its peers', each type weighted by how much its record says
(``1 / (1 / (n p (1 - p)) + TYPE_SPREAD^2)``) and the whole shrunk toward 0 by
a prior of spread ``agent_spread`` (0 turns it off). The type itself is left
out, so its own outcomes count once (in the posterior), not twice. Refreshed
after ``EB_REFRESH`` new outcomes (in a fleet of more than 6,400 (agent, type)
cells, after one per 100 cells). In the fleet simulator (40 seeds): +48
reward per 20,000 tasks, success 0.26 points closer to the oracle
(docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

STATS = ("s", "f", "ln_n", "ln_sum", "ln_sq", "fb_n", "fb_sum")
_AT = {name: i for i, name in enumerate(STATS)}
S, F, LN_N, LN_SUM, LN_SQ, FB_N, FB_SUM = range(len(STATS))
DEFAULT_LATENCY = 1.0  # seconds, assumed before anyone has finished a task
EB_MIN_AGENTS = 3  # peers with a record needed to estimate the prior strength
EB_MIN_N = 5.0  # outcomes of the type that make a record
EB_MAX_STRENGTH = 50.0  # pseudo-observations at most (a prior never outweighs 50 outcomes)
EB_REFRESH = 64  # new outcomes of a type before its prior strengths are re-estimated
AGENT_SPREAD = 0.5  # logits: how far agents differ from their peers across all their types
TYPE_SPREAD = 0.35  # logits: how much further an agent differs at one type


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


class _Table:
    """Stats arrays with a last-update time per cell, laid out [type, row] so a
    task type's column over many agents is one contiguous gather."""

    def __init__(self, *, bounds: bool = False) -> None:
        self.data = np.zeros((len(STATS), 4, 8))  # [stat, type, row]
        self.t = np.zeros((4, 8))
        self.n = np.zeros((4, 8), dtype=np.int64)  # outcomes ever (not discounted)
        # With ``bounds`` (the agents' own cells): per cell, the optimistic bound
        # on success of its record as of its last update (``success_bounds``).
        self.bound = np.full((4, 8), _NO_RECORD_BOUND) if bounds else None

    def ensure(self, rows: int, cols: int) -> None:
        c, r = self.t.shape
        if rows <= r and cols <= c:
            return
        nr, nc = max(r, 1), max(c, 1)
        while nr < rows:
            nr *= 2
        while nc < cols:
            nc *= 2
        data = np.zeros((len(STATS), nc, nr))
        data[:, :c, :r] = self.data
        self.data = data
        t = np.zeros((nc, nr))
        t[:c, :r] = self.t
        self.t = t
        n = np.zeros((nc, nr), dtype=np.int64)
        n[:c, :r] = self.n
        self.n = n
        if self.bound is not None:
            bound = np.full((nc, nr), _NO_RECORD_BOUND)
            bound[:c, :r] = self.bound
            self.bound = bound


def add_outcome(
    total: dict[str, float],
    success: bool | None,
    latency: float | None,
    feedback: float | None,
    weight: float = 1.0,
) -> int:
    """Add the statistics one outcome adds, times ``weight``, to ``total`` (in
    place: a commit's outcomes of one agent and type summed without a dict
    each); returns whether it counts as a judged attempt (1) or only feedback or
    latency (0)."""
    count = 0
    if success is not None:
        name = "s" if success else "f"
        total[name] = total.get(name, 0.0) + weight
        count = 1
    if latency is not None:
        x = math.log(max(latency, 1e-3))
        total["ln_n"] = total.get("ln_n", 0.0) + weight
        total["ln_sum"] = total.get("ln_sum", 0.0) + weight * x
        total["ln_sq"] = total.get("ln_sq", 0.0) + weight * x * x
    if feedback is not None:
        total["fb_n"] = total.get("fb_n", 0.0) + weight
        total["fb_sum"] = total.get("fb_sum", 0.0) + weight * feedback
    return count


def outcome_sums(
    success: bool | None, latency: float | None, feedback: float | None
) -> tuple[dict[str, float], int]:
    """The statistics one outcome adds (unweighted), and whether it counts as a
    judged attempt (1) or only feedback or latency (0)."""
    vals: dict[str, float] = {}
    count = add_outcome(vals, success, latency, feedback)
    return vals, count


class LearningState:
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
        self.cells = _Table(bounds=True)
        self.peer = _Table()  # per (peer group, type)
        self.every = _Table()  # per (0, type): the whole fleet
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

    def _decayed(self, table: _Table, r: int, c: int, now: float) -> dict[str, float]:
        k = float(self._factor(now - table.t[c, r]))
        return {name: float(table.data[i, c, r]) * k for i, name in enumerate(STATS)}

    def _add(
        self,
        table: _Table,
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
            cell[_AT[name]] += sign * v
        table.t[c, r] = max(now, table.t[c, r])
        table.n[c, r] += count
        if table.bound is not None:
            table.bound[c, r] = _bound(1.0 + float(cell[S]), 1.0 + float(cell[F]))

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

    def _groups(self) -> np.ndarray:
        if self._group_arr is None or len(self._group_arr) != len(self.group_of):
            self._group_arr = np.asarray(self.group_of, dtype=np.int64)
        return self._group_arr

    def _column(self, table: _Table, col: int, idx: np.ndarray, now: float) -> np.ndarray:
        """The statistics of cells ``idx`` of a type, decayed to ``now``: [stat, k]."""
        out: np.ndarray = table.data[:, col, idx]
        if self.half_life:
            out = out * np.exp2(-np.maximum(now - table.t[col, idx], 0.0) / self.half_life)
        return out

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
            p_peer = _shift(p_peer, offset)
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

    def _sf(self, table: _Table, r: int, c: int, now: float) -> tuple[float, float]:
        """Successes and failures of one cell, decayed to ``now``."""
        s, f = float(table.data[S, c, r]), float(table.data[F, c, r])
        if self.half_life:
            k = 2.0 ** (-max(now - float(table.t[c, r]), 0.0) / self.half_life)
            s, f = s * k, f * k
        return s, f

    def _centres_cached(
        self, col: int
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        if not self.prior_strength:
            return None
        cached = self._centres.get(col)
        seen = self._seen.get(col, 0)
        if cached is None or seen - cached[0] >= EB_REFRESH:
            cached = (seen, *self._estimate_centres(col))
            self._centres[col] = cached
        return cached

    def _estimate_centres(self, col: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per peer group, the sum of its members' weights and of their weighted
        success rates on one type column; per agent row, its weight and rate
        (so that a member's own record can be left out of its prior). Weight:
        ``1 / (tau^2 + p (1 - p) / n)``, with ``p`` the group's rate and
        ``tau^2 = p (1 - p) / (m + 1)`` the between-peer spread of strength ``m``."""
        k = len(self.agent_ids)
        rows = np.arange(k)
        t = self.cells.t[col, :k]
        stats = self._column(self.cells, col, rows, float(t.max()) if k else 0.0)
        s, n = stats[S], stats[S] + stats[F]
        g = self._groups()[:k]
        size = len(self.groups)
        pg = (np.bincount(g, weights=s, minlength=size) + 0.5) / (
            np.bincount(g, weights=n, minlength=size) + 1.0
        )
        pq = pg * (1.0 - pg)
        if self.empirical_prior:
            m = self._strengths_cached(col)[1][:size]
        else:
            m = np.full(size, float(self.prior_strength))
        tau2 = pq / (m + 1.0)
        has = n > 1e-9
        safe = np.where(has, n, 1.0)
        weight = np.where(has, safe / (tau2[g] * safe + pq[g]), 0.0)
        rate = np.where(has, s / safe, 0.0)
        return (
            np.bincount(g, weights=weight, minlength=size),
            np.bincount(g, weights=weight * rate, minlength=size),
            weight,
            rate,
        )

    def _peer_rates(
        self, rows: np.ndarray, col: int, thin: np.ndarray, pooled: np.ndarray
    ) -> np.ndarray:
        """The peers' mean success rate for agent rows on a type column (the
        agent left out), where their group has members with a record; else
        ``pooled`` (the pooled record's rate, or the fleet's where ``thin``)."""
        cached = self._centres_cached(col)
        if cached is None:
            return pooled
        _, total, weighted, weight, rate = cached
        known = rows < len(weight)
        own_w = (
            np.where(known, weight[np.minimum(rows, len(weight) - 1)], 0.0) if len(weight) else 0.0
        )
        own_r = np.where(known, rate[np.minimum(rows, len(rate) - 1)], 0.0) if len(rate) else 0.0
        g = self._groups()[rows]
        ok = g < len(total)
        g = np.where(ok, g, 0)
        rest = total[g] - own_w
        ok &= ~thin & (rest > 1e-9)
        mean = (weighted[g] - own_w * own_r) / np.where(ok, rest, 1.0)
        out: np.ndarray = np.where(ok, np.clip(mean, 1e-3, 1.0 - 1e-3), pooled)
        return out

    def _peer_rate(self, row: int, col: int, pooled: float) -> float:
        """:meth:`_peer_rates` for one agent row (not ``thin``), in scalar code."""
        cached = self._centres_cached(col)
        if cached is None:
            return pooled
        _, total, weighted, weight, rate = cached
        g = self.group_of[row]
        if g >= len(total):
            return pooled
        own_w, own_r = (float(weight[row]), float(rate[row])) if row < len(weight) else (0.0, 0.0)
        rest = float(total[g]) - own_w
        if rest <= 1e-9:
            return pooled
        return min(max((float(weighted[g]) - own_w * own_r) / rest, 1e-3), 1.0 - 1e-3)

    def _strength_of(self, row: int, col: int, thin: bool) -> float:
        """:meth:`strengths` for one agent row."""
        if not self.prior_strength:
            return 0.0
        if not self.empirical_prior:
            return float(self.prior_strength)
        cached = self._strengths_cached(col)
        return float(cached[2] if thin else cached[1][self.group_of[row]])

    def _strengths_cached(self, col: int) -> tuple[int, np.ndarray, float]:
        cached = self._strength.get(col)
        seen = self._seen.get(col, 0)
        if cached is None or seen - cached[0] >= EB_REFRESH:
            per_group, fleet_wide = self._estimate_strengths(col)
            cached = (seen, per_group, fleet_wide)
            self._strength[col] = cached
        return cached

    def strengths(self, rows: np.ndarray, col: int, thin: np.ndarray) -> np.ndarray:
        """The prior strength for agent rows on type column ``col`` (their peer
        group's, or the whole fleet's where ``thin``)."""
        if not self.prior_strength:
            return np.zeros(len(rows))
        if not self.empirical_prior:
            return np.full(len(rows), self.prior_strength)
        cached = self._strengths_cached(col)
        out: np.ndarray = np.where(thin, cached[2], cached[1][self._groups()[rows]])
        return out

    def _estimate_strengths(self, col: int) -> tuple[np.ndarray, float]:
        """Method-of-moments prior strength per peer group (and fleet-wide) for
        one type column: ``p (1 - p) / (variance of rates - binomial noise) - 1``."""
        k = len(self.agent_ids)
        s = self.cells.data[S, col, :k]
        n = s + self.cells.data[F, col, :k]
        groups = self._groups()[:k]
        per_group = np.full(len(self.groups), float(self.prior_strength))
        known = n >= EB_MIN_N
        if not known.any():
            return per_group, float(self.prior_strength)
        s, n, g = s[known], n[known], groups[known]
        rate = s / n

        def strength(
            cnt: np.ndarray,
            ss: np.ndarray,
            nn: np.ndarray,
            r1: np.ndarray,
            r2: np.ndarray,
            inv_n: np.ndarray,
        ) -> np.ndarray:
            p = ss / np.maximum(nn, 1e-9)
            c = np.maximum(cnt, 2.0)
            mean = r1 / c
            var = (r2 - c * mean * mean) / (c - 1.0)  # sample variance of the rates
            noise = p * (1.0 - p) * inv_n / c
            between = var - noise
            pq = np.maximum(p * (1.0 - p), 1e-6)
            m = np.where(between > 0, pq / np.maximum(between, 1e-12) - 1.0, EB_MAX_STRENGTH)
            out: np.ndarray = np.clip(m, 1.0, EB_MAX_STRENGTH)
            return out

        size = len(self.groups)
        cnt = np.bincount(g, minlength=size).astype(float)
        est = strength(
            cnt,
            np.bincount(g, weights=s, minlength=size),
            np.bincount(g, weights=n, minlength=size),
            np.bincount(g, weights=rate, minlength=size),
            np.bincount(g, weights=rate * rate, minlength=size),
            np.bincount(g, weights=1.0 / n, minlength=size),
        )
        per_group = np.where(cnt >= EB_MIN_AGENTS, est, per_group)
        fleet_wide = float(self.prior_strength)
        if len(rate) >= EB_MIN_AGENTS:
            fleet_wide = float(
                strength(
                    np.array([float(len(rate))]),
                    np.array([s.sum()]),
                    np.array([n.sum()]),
                    np.array([rate.sum()]),
                    np.array([(rate * rate).sum()]),
                    np.array([(1.0 / n).sum()]),
                )[0]
            )
        return per_group, fleet_wide

    def agent_offsets(self, rows: np.ndarray, col: int) -> np.ndarray | None:
        """Each agent row's logit offset for its prior at type column ``col``
        (what its other types show of it against its peers; see the module
        doc), or None when sharing is off."""
        table = self._offset_table()
        if table is None:
            return None
        if col >= table.shape[0] or not table.shape[1]:
            return np.zeros(len(rows))
        known = rows < table.shape[1]
        out: np.ndarray = np.where(known, table[col, np.minimum(rows, table.shape[1] - 1)], 0.0)
        return out

    def _offset_table(self) -> np.ndarray | None:
        """[type column, agent row] offsets, re-estimated when due; None when
        sharing is off."""
        if not self.prior_strength or not self.agent_spread:
            return None
        shape = (len(self.types), len(self.agent_ids))
        cached = self._offsets
        # A re-estimate reads every cell (~2 ms at 10,000 agents x 10 types): in
        # a large fleet, once per outcome per 100 cells at most.
        refresh = max(EB_REFRESH, shape[0] * shape[1] // 100)
        if cached is None or self._outcomes - cached[0] >= refresh or cached[1].shape != shape:
            cached = self._offsets = (self._outcomes, self._estimate_offsets())
        return cached[1]

    def _estimate_offsets(self) -> np.ndarray:
        k, cols = len(self.agent_ids), len(self.types)
        if not k or not cols:
            return np.zeros((cols, k))
        s = self.cells.data[S, :cols, :k]
        f = self.cells.data[F, :cols, :k]
        if self.half_life:
            t = self.cells.t[:cols, :k]
            k_decay = np.exp2(-np.maximum(float(t.max()) - t, 0.0) / self.half_life)
            s, f = s * k_decay, f * k_decay
        n = s + f
        g = self._groups()[:k]
        size = len(self.groups)
        # The peer group's rate at each type (one bincount over (type, group)).
        idx = (np.arange(cols)[:, None] * size + g[None, :]).ravel()
        gs = np.bincount(idx, weights=s.ravel(), minlength=cols * size).reshape(cols, size)
        gn = np.bincount(idx, weights=n.ravel(), minlength=cols * size).reshape(cols, size)
        peers = ((gs + 0.5) / (gn + 1.0))[:, g]
        own = (s + 0.5) / (n + 1.0)
        diff = _logit(own) - _logit(peers)
        info = n * peers * (1.0 - peers)
        weight = np.where(n > 0, info / (1.0 + info * TYPE_SPREAD**2), 0.0)
        total_w = weight.sum(axis=0)
        total_wd = (weight * diff).sum(axis=0)
        # Each type's own record left out of its own offset.
        out: np.ndarray = (total_wd - weight * diff) / (
            total_w - weight + 1.0 / self.agent_spread**2
        )
        return out

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


def _logit(p: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.log(p / (1.0 - p))
    return out


def _shift(p: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Success rates moved by ``offset`` in logits (kept within 0.001..0.999)."""
    q = np.clip(p, 1e-3, 1.0 - 1e-3)
    out: np.ndarray = np.clip(1.0 / (1.0 + np.exp(-(_logit(q) + offset))), 1e-3, 1.0 - 1e-3)
    return out


def _bound(a: float, b: float) -> float:
    """Mean + 2 sd of Beta(a, b), scalar (``success_bounds``' per-cell value)."""
    total = a + b
    return a / total + 2.0 * math.sqrt(a * b / (total * total * (total + 1.0)))


_NO_RECORD_BOUND = _bound(1.0, 1.0)


def beta_sd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The standard deviation of Beta(a, b) (a success rate's posterior)."""
    out: np.ndarray = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    return out


def _key(index: dict[str, int], col: int) -> str:
    for k, v in index.items():
        if v == col:
            return k
    raise KeyError(col)


@dataclass
class Estimates:
    """Per-candidate posterior (arrays, one value per agent row asked for)."""

    alpha: np.ndarray
    beta: np.ndarray
    latency: np.ndarray  # expected seconds (log-normal mean)
    log_mu: np.ndarray
    log_sigma: np.ndarray
    feedback: np.ndarray  # posterior mean quality (prior 0.5)
    feedback_n: np.ndarray
    n: np.ndarray  # own outcomes ever
    weight: np.ndarray  # own discounted outcomes
    peer_n: np.ndarray  # pooled pseudo-observations available
    peer_success: np.ndarray
    prior: np.ndarray  # pseudo-observations pooled (the prior strength used)
    agent_offset: np.ndarray  # logits the agent's other types moved its prior by

    @property
    def success(self) -> np.ndarray:
        out: np.ndarray = self.alpha / (self.alpha + self.beta)
        return out

    def reward(self, weights: RewardWeights, success: np.ndarray | None = None) -> np.ndarray:
        p = self.success if success is None else success
        out: np.ndarray = (
            weights.success * p - weights.latency * self.latency + weights.feedback * self.feedback
        )
        return out

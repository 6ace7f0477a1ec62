"""The priors an agent gets from its peers (experience sharing).

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

import numpy as np

from ymera.routing.learning.stats import F, S, Table, logit

EB_MIN_AGENTS = 3  # peers with a record needed to estimate the prior strength
EB_MIN_N = 5.0  # outcomes of the type that make a record
EB_MAX_STRENGTH = 50.0  # pseudo-observations at most (a prior never outweighs 50 outcomes)
EB_REFRESH = 64  # new outcomes of a type before its prior strengths are re-estimated
AGENT_SPREAD = 0.5  # logits: how far agents differ from their peers across all their types
TYPE_SPREAD = 0.35  # logits: how much further an agent differs at one type


class PeerPriors:
    """The part of ``LearningState`` that estimates, per task type, the peers'
    rate, the prior's strength and each agent's offset (cached, re-estimated
    as outcomes arrive); ``LearningState`` sets the attributes below."""

    half_life: float | None
    prior_strength: float
    empirical_prior: bool
    agent_spread: float
    agent_ids: list[str]
    types: dict[str, int]
    group_of: list[int]
    groups: dict[str, int]
    cells: Table
    _outcomes: int
    _offsets: tuple[int, np.ndarray] | None
    _strength: dict[int, tuple[int, np.ndarray, float]]
    _seen: dict[int, int]
    _centres: dict[int, tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    _group_arr: np.ndarray | None

    def _groups(self) -> np.ndarray:
        if self._group_arr is None or len(self._group_arr) != len(self.group_of):
            self._group_arr = np.asarray(self.group_of, dtype=np.int64)
        return self._group_arr

    def _column(self, table: Table, col: int, idx: np.ndarray, now: float) -> np.ndarray:
        """The statistics of cells ``idx`` of a type, decayed to ``now``: [stat, k]."""
        out: np.ndarray = table.data[:, col, idx]
        if self.half_life:
            out = out * np.exp2(-np.maximum(now - table.t[col, idx], 0.0) / self.half_life)
        return out

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
        diff = logit(own) - logit(peers)
        info = n * peers * (1.0 - peers)
        weight = np.where(n > 0, info / (1.0 + info * TYPE_SPREAD**2), 0.0)
        total_w = weight.sum(axis=0)
        total_wd = (weight * diff).sum(axis=0)
        # Each type's own record left out of its own offset.
        out: np.ndarray = (total_wd - weight * diff) / (
            total_w - weight + 1.0 / self.agent_spread**2
        )
        return out

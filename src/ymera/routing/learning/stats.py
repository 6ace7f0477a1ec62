"""The learning engine's statistics: the sufficient statistics kept per (agent,
task type) cell and their layout in numpy arrays, what one outcome adds to
them, and the posterior estimates read from them
(``Estimates``) with the small numeric helpers both the state
(``ymera.routing.learning.model``) and its priors
(``ymera.routing.learning.priors``) use."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ymera.routing.learning.model import RewardWeights

STATS = ("s", "f", "ln_n", "ln_sum", "ln_sq", "fb_n", "fb_sum")


STAT_INDEX = {name: i for i, name in enumerate(STATS)}


S, F, LN_N, LN_SUM, LN_SQ, FB_N, FB_SUM = range(len(STATS))


DEFAULT_LATENCY = 1.0  # seconds, assumed before anyone has finished a task


class Table:
    """Stats arrays with a last-update time per cell, laid out [type, row] so a
    task type's column over many agents is one contiguous gather."""

    def __init__(self, *, bounds: bool = False) -> None:
        self.data = np.zeros((len(STATS), 4, 8))  # [stat, type, row]
        self.t = np.zeros((4, 8))
        self.n = np.zeros((4, 8), dtype=np.int64)  # outcomes ever (not discounted)
        # With ``bounds`` (the agents' own cells): per cell, the optimistic bound
        # on success of its record as of its last update (``success_bounds``).
        self.bound = np.full((4, 8), NO_RECORD_BOUND) if bounds else None

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
            bound = np.full((nc, nr), NO_RECORD_BOUND)
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


def logit(p: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.log(p / (1.0 - p))
    return out


def shift(p: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Success rates moved by ``offset`` in logits (kept within 0.001..0.999)."""
    q = np.clip(p, 1e-3, 1.0 - 1e-3)
    out: np.ndarray = np.clip(1.0 / (1.0 + np.exp(-(logit(q) + offset))), 1e-3, 1.0 - 1e-3)
    return out


def success_bound(a: float, b: float) -> float:
    """Mean + 2 sd of Beta(a, b), scalar (``success_bounds``' per-cell value)."""
    total = a + b
    return a / total + 2.0 * math.sqrt(a * b / (total * total * (total + 1.0)))


NO_RECORD_BOUND = success_bound(1.0, 1.0)


def beta_sd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The standard deviation of Beta(a, b) (a success rate's posterior)."""
    out: np.ndarray = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    return out


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

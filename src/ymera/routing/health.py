"""Outlier ejection from task outcomes (every connection mode, workers too).

Two rules, per agent:

- failures in a row eject it: ``consecutive`` of them for an agent without a
  record yet; for one with a record, as many as are improbable (``< alpha``)
  under its record taken as a Beta posterior (an agent that fails half its
  tasks often fails five in a row; one that never fails rarely fails two).
  When the caller says what each task was expected to do (``expected``: the
  learning engine's success probability for this agent at this task's type),
  an agent with a record is judged by those rates instead: at least
  ``consecutive`` failures whose joint probability is below ``typed_alpha`` (an
  agent's overall record says little about the work it is sent now: one given
  the types it is weaker at fails more often without having changed); one
  without a record by the rate expected at the run's first failure: at least
  ``consecutive`` failures improbable at ``alpha`` (the learner's expectation
  falls with each failure, so the run is not judged at it);
- a success-rate drop that is statistically significant ejects it: the last
  ``window`` outcomes are tested against the agent's own record before them
  (at least ``min_baseline`` outcomes) with a one-sided beta-binomial test:
  ``P(X <= successes)`` for ``window`` more trials of an agent whose rate is
  known only as far as its record tells (a short record is weak evidence, so a
  chance dip after twenty good outcomes is no drop) ``< alpha`` is a drop, not
  bad luck. An agent whose success rate halves loses its traffic within about
  ``window`` tasks. When every outcome of the window came with its expected
  rate, the window is tested against those rates instead (``P(X <=
  successes)`` for independent trials at the expected rates ``< typed_alpha``):
  a window of harder work is no drop.

An ejection lasts ``base_seconds x times ejected`` (capped at ``max_seconds``).
When it runs out the agent is on probation: routable again, and its next
outcome decides; a success re-admits it, a failure ejects it again, for
longer. After an ejection the window becomes the new baseline (the agent is
judged by what it is now, and the learning engine forgets most of what it
knew of it: it keeps ``KEPT_AFTER_EJECTION`` of it, see
:meth:`LearningState.forget`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ymera.routing.fleet import Fleet

# The share of what the learning engine knows of an agent that it keeps when
# the agent is ejected (the server's engine and the fleet simulator both use
# it). In the simulator (20 seeds) keeping 0.1, 0.25, 0.5 or all of it made no
# difference beyond the noise (docs/benchmarks.md); what an ejected agent does
# next should decide, so little is kept.
KEPT_AFTER_EJECTION = 0.1


@dataclass
class _Agent:
    consecutive: int = 0
    window: deque[bool] = field(default_factory=deque)
    base_s: float = 0.0
    base_f: float = 0.0
    ejected_until: float | None = None
    probation: bool = False
    times: int = 0
    reason: str | None = None
    run_log_p: float = 0.0  # log probability of the current run of failures (expected rates)
    run_expected: float | None = None  # the rate expected at the run's first failure
    expected: deque[float | None] = field(default_factory=deque)  # per window outcome


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    p = min(max(p, 0.0), 1.0)
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def _lbeta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def beta_binom_cdf(k: int, n: int, a: float, b: float) -> float:
    """P(X <= k) for X ~ BetaBinomial(n, a, b): successes in ``n`` more trials
    of an agent whose success rate is known only as a Beta(a, b) posterior
    (a short record is weak evidence, so it takes a larger dip to count)."""
    lb = _lbeta(a, b)
    return min(
        1.0,
        math.fsum(math.comb(n, i) * math.exp(_lbeta(i + a, n - i + b) - lb) for i in range(k + 1)),
    )


def poisson_binom_cdf(k: int, rates: list[float]) -> float:
    """P(X <= k) for X the number of successes of independent trials with
    success probabilities ``rates``."""
    dist = [1.0]
    for p in rates:
        nxt = [0.0] * (len(dist) + 1)
        for i, q in enumerate(dist):
            nxt[i] += q * (1.0 - p)
            nxt[i + 1] += q * p
        dist = nxt
    return min(1.0, math.fsum(dist[: k + 1]))


def run_probability(k: int, a: float, b: float) -> float:
    """Predictive probability of ``k`` failures in a row under Beta(a, b)."""
    return math.exp(_lbeta(a, b + k) - _lbeta(a, b))


class OutlierDetector:
    def __init__(
        self,
        *,
        consecutive: int = 5,
        window: int = 20,
        alpha: float = 1e-3,
        min_baseline: int = 20,
        base_seconds: float = 30.0,
        max_seconds: float = 300.0,
        typed_alpha: float = 1e-5,
    ) -> None:
        self.consecutive = consecutive
        self.window = window
        self.alpha = alpha
        self.min_baseline = min_baseline
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self.typed_alpha = typed_alpha
        self.agents: dict[str, _Agent] = {}
        self.held: set[str] = set()  # agents ejected or on probation
        self.ejections = 0

    def record(
        self, agent_id: str, success: bool, now: float, *, expected: float | None = None
    ) -> str | None:
        """Feed one outcome; returns "ejected", "readmitted" or None.
        (See :meth:`_record`.)"""
        verdict = self._record(agent_id, success, now, expected)
        if verdict == "ejected":
            self.held.add(agent_id)
        elif verdict == "readmitted":
            self.held.discard(agent_id)
        return verdict

    def _record(
        self, agent_id: str, success: bool, now: float, expected: float | None
    ) -> str | None:
        """Feed one outcome; returns "ejected", "readmitted" or None.

        ``expected``: the probability that this agent succeeds at this task's
        type, as learned before this outcome (the learning engine's posterior
        mean). Given, the failures in a row of an agent with a record, and its
        window of outcomes, are judged by how improbable they are at the rates
        expected of those tasks, not at the agent's overall record: an agent
        sent work it is weaker at fails more often without having changed."""
        a = self.agents.get(agent_id)
        if a is None:
            a = self.agents[agent_id] = _Agent()
        if a.probation:
            a.probation = False
            if success:
                a.ejected_until = None
                a.consecutive = 0
                return "readmitted"
            return self._eject(a, now, "failed its probation task")
        if a.ejected_until is not None:  # finishing work it had before the ejection
            return None
        self._note(a, success, expected)
        if success:
            return None
        return self._judge_run(a, now, expected) or self._judge_window(a, now)

    def _note(self, a: _Agent, success: bool, expected: float | None) -> None:
        """Add one outcome to the agent's run of failures and to its window (the
        outcome leaving the window joins its baseline record)."""
        a.consecutive = 0 if success else a.consecutive + 1
        if success:
            a.run_log_p = 0.0
            a.run_expected = None
        else:
            if a.consecutive == 1:
                a.run_expected = expected
            if expected is not None:
                a.run_log_p += math.log(max(1.0 - expected, 1e-12))
        a.window.append(success)
        a.expected.append(expected)
        if len(a.window) > self.window:
            a.expected.popleft()
            old = a.window.popleft()
            if old:
                a.base_s += 1
            else:
                a.base_f += 1

    def _known(self, a: _Agent) -> bool:
        """Whether the agent has a baseline record (outcomes older than its window)."""
        return a.base_s + a.base_f >= self.min_baseline

    def _judge_run(self, a: _Agent, now: float, expected: float | None) -> str | None:
        """After a failure: eject the agent if its run of failures is improbable."""
        known = self._known(a)
        if expected is not None and not known and a.run_expected is not None:
            # No record yet (checked a few times only, so at ``alpha``): the run
            # judged at the rate expected of the agent when it began, not at the
            # rates the run itself has since lowered. A newcomer failing work
            # expected of it is out after a handful; one failing work it was
            # only guessed to do (a coin-flip) after ten.
            run_p = a.consecutive * math.log(max(1.0 - a.run_expected, 1e-12))
            if a.consecutive >= self.consecutive and run_p < math.log(self.alpha):
                return self._eject(a, now, f"{a.consecutive} consecutive failures")
        elif expected is not None and known:
            # Judged at the rates expected of the tasks that failed; at least
            # ``consecutive`` of them, and improbable at ``typed_alpha``: the rule
            # is checked after every failure of every agent (thousands of checks
            # a day), so ``alpha`` would eject healthy agents by chance.
            if a.consecutive >= self.consecutive and a.run_log_p < math.log(self.typed_alpha):
                return self._eject(a, now, f"{a.consecutive} consecutive failures")
        elif a.consecutive >= self.consecutive:
            # The record before this run of failures, as a Beta posterior.
            wins = sum(a.window)
            before_f = max(a.base_f + len(a.window) - wins - a.consecutive, 0.0)
            if not known or (
                run_probability(a.consecutive, a.base_s + wins + 1, before_f + 1) < self.alpha
            ):
                return self._eject(a, now, f"{a.consecutive} consecutive failures")
        return None

    def _judge_window(self, a: _Agent, now: float) -> str | None:
        """After a failure: eject the agent if its success rate over a full window
        has dropped significantly (below the rates expected of those tasks where
        they are known, below its own baseline record otherwise)."""
        if len(a.window) < self.window or not self._known(a):
            return None
        k = sum(a.window)
        if None not in a.expected:
            rates = [float(e) for e in a.expected if e is not None]
            pv = poisson_binom_cdf(k, rates)
            if pv >= self.typed_alpha:
                return None
            reason = (
                f"success rate dropped to {k}/{self.window} from {sum(rates):.1f}"
                f" expected (p={pv:.1e})"
            )
        else:
            p0 = (a.base_s + 1) / (a.base_s + a.base_f + 2)
            pv = beta_binom_cdf(k, self.window, a.base_s + 1, a.base_f + 1)
            if pv >= self.alpha:
                return None
            reason = f"success rate dropped to {k}/{self.window} from {p0:.2f} (p={pv:.1e})"
        a.base_s, a.base_f = float(k), float(self.window - k)
        return self._eject(a, now, reason)

    def _eject(self, a: _Agent, now: float, reason: str) -> str:
        a.times += 1
        a.ejected_until = now + min(self.max_seconds, self.base_seconds * a.times)
        a.reason = reason
        a.consecutive = 0
        a.run_log_p = 0.0
        a.window.clear()
        a.expected.clear()
        self.ejections += 1
        return "ejected"

    def is_ejected(self, agent_id: str, now: float) -> bool:
        a = self.agents.get(agent_id)
        if a is None or a.ejected_until is None:
            return False
        if now >= a.ejected_until and not a.probation:
            a.probation = True  # one task decides
            return False
        return not a.probation

    def blocks(self, agent_id: str, now: float, load: int) -> bool:
        """Whether routing passes the agent by now: ejected, or on probation
        with work running (its probation task, or work it had before): one
        task decides, so a probationer takes one at a time until it does."""
        if self.is_ejected(agent_id, now):
            return True
        a = self.agents.get(agent_id)
        return a is not None and a.probation and load > 0

    def ejected(self, now: float) -> list[str]:
        return [i for i in list(self.agents) if self.is_ejected(i, now)]

    def apply(self, fleet: Fleet, now: float) -> None:
        """Mark the fleet's ejected agents (and keep probationers to one task)."""
        fleet.ejected[:] = False
        for agent_id in self.held:
            row = fleet.by_key.get(agent_id)
            if row is None:
                continue
            if self.blocks(agent_id, now, int(fleet.load[row])):
                fleet.ejected[row] = True

    def describe(self, now: float) -> list[dict[str, Any]]:
        out = []
        for agent_id, a in self.agents.items():
            if a.ejected_until is None:
                continue
            out.append(
                {
                    "agent_id": agent_id,
                    "reason": a.reason,
                    "times": a.times,
                    "probation": a.probation or now >= a.ejected_until,
                    "until": a.ejected_until,
                }
            )
        return out

    def reset(self, agent_id: str | None = None) -> None:
        if agent_id is None:
            self.agents.clear()
            self.held.clear()
        else:
            self.agents.pop(agent_id, None)
            self.held.discard(agent_id)

"""Outlier ejection on task outcomes: consecutive failures, a significant
success-rate drop (and not a chance dip), probation and re-admission."""

from __future__ import annotations

import random

import numpy as np

from ymera.routing.fleet import Fleet
from ymera.routing.health import (
    OutlierDetector,
    beta_binom_cdf,
    binom_cdf,
    poisson_binom_cdf,
    run_probability,
)
from ymera.routing.learning.model import LearningState


def test_binomial_tail() -> None:
    assert abs(binom_cdf(0, 3, 0.5) - 0.125) < 1e-12
    assert abs(binom_cdf(3, 3, 0.5) - 1.0) < 1e-12


def test_consecutive_failures_eject_then_probation_readmits() -> None:
    d = OutlierDetector(consecutive=3, base_seconds=10, max_seconds=25)
    assert [d.record("a", False, t) for t in (1, 2)] == [None, None]
    assert d.record("a", False, 3) == "ejected"
    assert d.is_ejected("a", 12.9)
    assert not d.is_ejected("a", 13.0)  # probation: one task decides
    assert d.record("a", False, 14) == "ejected"  # failed it: ejected for longer
    assert d.is_ejected("a", 14 + 19.9)
    assert not d.is_ejected("a", 14 + 20)
    assert d.record("a", True, 35) == "readmitted"
    assert not d.is_ejected("a", 36)
    fleet = Fleet()
    fleet.add("a", capacity=2)
    d.apply(fleet, 36)
    assert not fleet.ejected[0]


def test_a_reliable_agent_needs_fewer_failures_in_a_row() -> None:
    weak = OutlierDetector(consecutive=3, min_baseline=20)
    strong = OutlierDetector(consecutive=3, min_baseline=20)
    rng = random.Random(1)
    for t in range(60):
        weak.record("a", rng.random() < 0.4, t)  # fails often: three in a row is normal
        strong.record("a", t % 30 != 0, t)
    verdicts = [weak.record("a", False, 100 + i) for i in range(3)]
    assert verdicts == [None, None, None]
    assert [strong.record("a", False, 100 + i) for i in range(3)][-1] == "ejected"


def test_a_significant_drop_ejects_within_the_window_and_chance_does_not() -> None:
    rng = random.Random(7)
    d = OutlierDetector(consecutive=50, window=20, alpha=1e-3)
    for t in range(200):
        assert d.record("healthy", rng.random() < 0.8, t) is None
    for t in range(200):
        d.record("degrading", rng.random() < 0.9, t)
    verdicts = [d.record("degrading", rng.random() < 0.3, 200 + i) for i in range(20)]
    assert "ejected" in verdicts  # within one window of tasks
    reason = d.agents["degrading"].reason or ""
    assert reason.startswith("success rate dropped")


def test_a_short_record_makes_a_dip_weak_evidence() -> None:
    # 18 of 20, then 11 of 20: against an exact 0.9 rate that is a drop
    # (p ~ 1e-4); against what twenty outcomes tell of the agent, it is not.
    d = OutlierDetector(consecutive=50, window=20, min_baseline=20, alpha=1e-3)
    first = [True] * 18 + [False] * 2
    second = [True, False] * 9 + [True, True]  # 11 successes, no long run
    verdicts = [d.record("a", ok, t) for t, ok in enumerate(first + second)]
    assert "ejected" not in verdicts
    assert binom_cdf(11, 20, 0.9) < 1e-3 < beta_binom_cdf(11, 20, 19, 3)


def test_beta_binomial_tail_and_runs() -> None:
    assert abs(beta_binom_cdf(20, 20, 3, 4) - 1.0) < 1e-12
    # With a huge record the beta-binomial is the binomial.
    assert abs(beta_binom_cdf(5, 20, 9000, 1000) - binom_cdf(5, 20, 0.9)) < 1e-6
    assert abs(run_probability(3, 59, 3) - (3 / 62) * (4 / 63) * (5 / 64)) < 1e-12


def _with_record(d: OutlierDetector, agent: str = "a") -> None:
    for t in range(40):  # 90% success: 20 outcomes past the window make its record
        assert d.record(agent, t % 10 != 0, t) is None


def test_a_run_of_failures_is_judged_at_the_rates_expected_of_its_types() -> None:
    # Sent work it is expected to fail often at (40% success): six failures in a
    # row are no sign of change, though its record (90%) would call them one.
    blind, typed = OutlierDetector(), OutlierDetector()
    _with_record(blind)
    _with_record(typed)
    assert "ejected" in [blind.record("a", False, 40 + i) for i in range(6)]
    assert [typed.record("a", False, 40 + i, expected=0.4) for i in range(6)] == [None] * 6
    # Expected to succeed (95%): improbable at typed_alpha, but never before
    # ``consecutive`` failures.
    sure = OutlierDetector(consecutive=5)
    _with_record(sure)
    verdicts = [sure.record("a", False, 40 + i, expected=0.95) for i in range(5)]
    assert verdicts == [None, None, None, None, "ejected"]
    assert sure.agents["a"].reason == "5 consecutive failures"


def test_a_success_ends_the_run_of_expected_failures() -> None:
    d = OutlierDetector(consecutive=5)
    _with_record(d)
    for i in range(4):
        assert d.record("a", False, 40 + i, expected=0.95) is None
    assert d.record("a", True, 44, expected=None) is None
    assert [d.record("a", False, 45 + i, expected=0.95) for i in range(4)] == [None] * 4


def test_an_agent_without_a_record_is_judged_at_the_rate_expected_when_its_run_began() -> None:
    d = OutlierDetector(consecutive=5)
    # Expected to succeed (0.9): five failures in a row eject it.
    verdicts = [d.record("sure", False, i, expected=0.9) for i in range(5)]
    assert verdicts == [None, None, None, None, "ejected"]
    # A coin-flip (nothing learned of it yet): ten, however far the learner's
    # expectation falls during the run.
    falling = [0.5 / (i + 1) for i in range(10)]
    verdicts = [d.record("new", False, i, expected=e) for i, e in enumerate(falling)]
    assert verdicts == [None] * 9 + ["ejected"]
    # Work it was expected to do 60% of the time: five failures are no evidence
    # of a fault (0.4^5 = 1%), eight are.
    verdicts = [d.record("fair", False, i, expected=0.6) for i in range(8)]
    assert verdicts == [None] * 7 + ["ejected"]


def test_success_mean_is_the_posterior_mean_of_the_cell() -> None:
    learning = LearningState(prior_strength=4.0)
    for i in range(10):
        learning.observe("a", "code", success=i % 5 != 0, latency=1.0, now=1.0, group="g")
        learning.observe("b", "code", success=i % 2 == 0, latency=1.0, now=1.0, group="g")
    row = learning.agent_row("a")
    view = learning.view(np.array([row]), "code", 2.0)
    assert learning.success_mean("a", "code", 2.0) == float(view.success[0])


def test_poisson_binomial_tail() -> None:
    for k in range(6):
        assert abs(poisson_binom_cdf(k, [0.3] * 5) - binom_cdf(k, 5, 0.3)) < 1e-12
    assert abs(poisson_binom_cdf(0, [0.5, 0.2]) - 0.4) < 1e-12
    assert abs(poisson_binom_cdf(1, [0.5, 0.2]) - 0.9) < 1e-12


def _half(t: int) -> bool:
    return t % 2 == 0  # 50% success, never two failures in a row


def test_a_window_of_harder_work_is_no_drop() -> None:
    # A 90% record, then work it is expected to do half the time: 10/20 is a
    # drop by its record, not by what the work was expected to yield.
    blind, typed = OutlierDetector(), OutlierDetector()
    for t in range(80):
        blind.record("a", t % 10 != 0, t)
        typed.record("a", t % 10 != 0, t, expected=0.9)
    blind_verdicts = [blind.record("a", _half(t), 80 + t) for t in range(20)]
    assert "ejected" in blind_verdicts
    assert "dropped" in (blind.agents["a"].reason or "")
    typed_verdicts = [typed.record("a", _half(t), 80 + t, expected=0.5) for t in range(20)]
    assert typed_verdicts == [None] * 20


def test_a_drop_at_the_expected_rates_ejects() -> None:
    d = OutlierDetector()
    for t in range(80):
        d.record("a", t % 10 != 0, t, expected=0.9)
    verdicts = [d.record("a", _half(t), 80 + t, expected=0.9) for t in range(20)]
    assert "ejected" in verdicts
    assert "expected" in (d.agents["a"].reason or "")

"""The outlier-ejection rules applied to an agent's health row (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ymera.agents.health_checks import EjectionPolicy, Verdict, apply_outcome, health_url
from ymera.models.agent_metrics import AgentHealth

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = EjectionPolicy(consecutive_failures=3, base_seconds=30, max_seconds=75)


def fresh() -> AgentHealth:
    return AgentHealth(
        agent_id="a", consecutive_failures=0, times_ejected=0, probing=False, next_probe_at=T0
    )


def test_health_urls() -> None:
    assert health_url("http", "http://h:1/agent/") == "http://h:1/agent/health"
    assert health_url("a2a", "http://h:1") == "http://h:1/.well-known/agent-card.json"


def test_a_success_resets_the_failure_count() -> None:
    h = fresh()
    assert apply_outcome(h, False, now=T0, policy=POLICY) == Verdict.NONE
    assert apply_outcome(h, False, now=T0, policy=POLICY) == Verdict.NONE
    assert apply_outcome(h, True, now=T0, policy=POLICY) == Verdict.NONE
    assert h.consecutive_failures == 0
    assert apply_outcome(h, False, now=T0, policy=POLICY) == Verdict.NONE
    assert h.consecutive_failures == 1


def test_ejection_grows_with_each_ejection_up_to_the_cap() -> None:
    h = fresh()
    now = T0
    for _ in range(3):
        verdict = apply_outcome(h, False, now=now, policy=POLICY)
    assert verdict == Verdict.EJECTED
    assert h.ejected_until == now + timedelta(seconds=30)
    durations = []
    for _ in range(3):  # each time the ejection runs out, the probe fails again
        assert h.ejected_until is not None
        now = h.ejected_until
        assert apply_outcome(h, False, now=now, policy=POLICY) == Verdict.EJECTED
        assert h.ejected_until is not None
        durations.append((h.ejected_until - now).total_seconds())
    assert durations == [60, 75, 75]  # base x 2, then capped at 75
    assert h.times_ejected == 4
    now = h.ejected_until
    assert apply_outcome(h, True, now=now, policy=POLICY) == Verdict.READMITTED
    assert (h.ejected_until, h.probing, h.healthy_since) == (None, False, now)


def test_multiplier_decays_while_healthy() -> None:
    h = fresh()
    for _ in range(3):
        apply_outcome(h, False, now=T0, policy=POLICY)
    assert h.ejected_until is not None
    back = h.ejected_until
    apply_outcome(h, False, now=back, policy=POLICY)  # re-ejected: times_ejected 2
    assert h.times_ejected == 2
    assert h.ejected_until is not None
    back = h.ejected_until
    assert apply_outcome(h, True, now=back, policy=POLICY) == Verdict.READMITTED
    apply_outcome(h, True, now=back + timedelta(seconds=29), policy=POLICY)
    assert h.times_ejected == 2
    apply_outcome(h, True, now=back + timedelta(seconds=31), policy=POLICY)
    assert h.times_ejected == 1
    apply_outcome(h, True, now=back + timedelta(seconds=95), policy=POLICY)
    assert h.times_ejected == 0
    # The next ejection is short again.
    now = back + timedelta(seconds=100)
    for _ in range(3):
        apply_outcome(h, False, now=now, policy=POLICY)
    assert h.ejected_until == now + timedelta(seconds=30)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 120)), max_size=80))
def test_ejections_follow_the_rules(steps: list[tuple[bool, int]]) -> None:
    """Whatever the outcomes: an ejection comes only after N failures in a row (or a
    failed probe right after an ejection), lasts base x k capped, and nothing is
    re-admitted that was not ejected."""
    h = fresh()
    now = T0
    run = 0  # failures in a row since the last success or ejection
    was_ejected = False
    for ok, wait in steps:
        now += timedelta(seconds=wait)
        probing_before = h.probing or (h.ejected_until is not None and now >= h.ejected_until)
        still_ejected = h.ejected_until is not None and now < h.ejected_until
        times = h.times_ejected
        verdict = apply_outcome(h, ok, now=now, policy=POLICY)
        if still_ejected:
            assert verdict == Verdict.NONE
            continue
        if ok:
            run = 0
            assert verdict in (Verdict.NONE, Verdict.READMITTED)
            assert (verdict == Verdict.READMITTED) == (was_ejected and probing_before)
            if verdict == Verdict.READMITTED:
                was_ejected = False
            continue
        run += 1
        if verdict == Verdict.EJECTED:
            assert run >= POLICY.consecutive_failures or probing_before
            assert h.times_ejected == times + 1
            assert h.ejected_until is not None
            seconds = (h.ejected_until - now).total_seconds()
            assert seconds == min(POLICY.max_seconds, POLICY.base_seconds * h.times_ejected)
            run = 0
            was_ejected = True
        else:
            assert run < POLICY.consecutive_failures
            assert not probing_before

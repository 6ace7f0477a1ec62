from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ymera.kit.clock import FrozenClock
from ymera.resilience.breaker import BreakerState, CircuitBreaker, OutlierEjector

B = BreakerState


def test_opens_after_threshold_and_recovers_through_half_open() -> None:
    clock = FrozenClock()
    br = CircuitBreaker(failure_threshold=3, open_seconds=10, clock=clock)
    for _ in range(2):
        assert br.allow()
        assert br.record_failure() == B.CLOSED
    assert br.record_failure() == B.OPEN
    assert not br.allow()
    assert br.retry_after() == pytest.approx(10)
    clock.advance(9.9)
    assert not br.allow()
    clock.advance(0.2)
    assert br.current() == B.HALF_OPEN
    assert br.allow()  # the probe
    assert not br.allow()  # only one probe at a time
    assert br.record_success() == B.CLOSED
    assert br.allow()


def test_failed_probe_reopens() -> None:
    clock = FrozenClock()
    br = CircuitBreaker(failure_threshold=1, open_seconds=5, clock=clock)
    br.record_failure()
    clock.advance(5)
    assert br.allow()
    assert br.record_failure() == B.OPEN
    assert not br.allow()
    assert br.retry_after() == pytest.approx(5)


def test_success_resets_the_count() -> None:
    br = CircuitBreaker(failure_threshold=2, clock=FrozenClock())
    br.record_failure()
    br.record_success()
    assert br.record_failure() == B.CLOSED


@given(st.lists(st.booleans(), max_size=60))
def test_breaker_never_allows_while_open(outcomes: list[bool]) -> None:
    clock = FrozenClock()
    br = CircuitBreaker(failure_threshold=3, open_seconds=10, clock=clock)
    for ok in outcomes:
        if br.current() == B.OPEN:
            assert not br.allow()
            clock.advance(10)
            continue
        if br.allow():
            (br.record_success if ok else br.record_failure)()


def test_ejection_grows_with_repeats_and_is_capped() -> None:
    clock = FrozenClock()
    ej = OutlierEjector(consecutive_failures=2, base_seconds=10, max_seconds=25, clock=clock)
    assert not ej.record_failure()
    assert ej.record_failure()
    assert ej.is_ejected()
    clock.advance(10)
    assert not ej.is_ejected()  # probing now
    assert ej.record_failure()  # a failed probe ejects again, for 2 x base
    clock.advance(19)
    assert ej.is_ejected()
    clock.advance(1)
    assert not ej.is_ejected()
    assert ej.record_failure()
    clock.advance(25)  # capped at max_seconds, not 30
    assert not ej.is_ejected()
    ej.record_success()
    assert not ej.probing
    assert not ej.record_failure()  # back to counting consecutive failures

"""Circuit breaker (closed / open / half-open) and Envoy-style outlier ejection.

Both are small state machines driven by outcomes and an injected clock, so
they are tested by moving time rather than sleeping.

- :class:`CircuitBreaker`: ``failure_threshold`` consecutive failures open the
  circuit; after ``open_seconds`` it lets ``half_open_probes`` calls through; a
  success closes it, a failure re-opens it.
- :class:`OutlierEjector`: ``consecutive_failures`` failures eject the target
  for ``base_seconds x times-ejected`` (capped); when that runs out the target is
  probed and, on success, re-admitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from ymera.kit.clock import Clock, SystemClock


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    open_seconds: float = 30.0
    half_open_probes: int = 1
    clock: Clock = field(default_factory=SystemClock)

    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: datetime | None = None
    probes_in_flight: int = 0

    def _refresh(self) -> None:
        if (
            self.state == BreakerState.OPEN
            and self.opened_at is not None
            and self.clock.now() - self.opened_at >= timedelta(seconds=self.open_seconds)
        ):
            self.state = BreakerState.HALF_OPEN
            self.probes_in_flight = 0

    def current(self) -> BreakerState:
        self._refresh()
        return self.state

    def allow(self) -> bool:
        """May a call go through now? In half-open this reserves a probe slot."""
        self._refresh()
        if self.state == BreakerState.CLOSED:
            return True
        if self.state == BreakerState.HALF_OPEN and self.probes_in_flight < self.half_open_probes:
            self.probes_in_flight += 1
            return True
        return False

    def record_success(self) -> BreakerState:
        self._refresh()
        self.consecutive_failures = 0
        self.state = BreakerState.CLOSED
        self.opened_at = None
        self.probes_in_flight = 0
        return self.state

    def record_failure(self) -> BreakerState:
        self._refresh()
        self.consecutive_failures += 1
        if self.state == BreakerState.HALF_OPEN or (
            self.state == BreakerState.CLOSED
            and self.consecutive_failures >= self.failure_threshold
        ):
            self.state = BreakerState.OPEN
            self.opened_at = self.clock.now()
            self.probes_in_flight = 0
        return self.state

    def retry_after(self) -> float:
        """Seconds until a probe is allowed (0 when calls may go through)."""
        self._refresh()
        if self.state != BreakerState.OPEN or self.opened_at is None:
            return 0.0
        left = self.open_seconds - (self.clock.now() - self.opened_at).total_seconds()
        return max(0.0, left)


@dataclass
class OutlierEjector:
    consecutive_failures: int = 5
    base_seconds: float = 30.0
    max_seconds: float = 300.0
    clock: Clock = field(default_factory=SystemClock)

    failures: int = 0
    times_ejected: int = 0
    ejected_until: datetime | None = None
    probing: bool = False

    def is_ejected(self) -> bool:
        if self.ejected_until is None:
            return False
        if self.clock.now() >= self.ejected_until:
            self.ejected_until = None
            self.probing = True  # next outcome decides re-admission
            return False
        return True

    def record_success(self) -> None:
        self.failures = 0
        if self.probing:
            self.probing = False

    def record_failure(self) -> bool:
        """Count a failure; True when this ejects the target."""
        if self.is_ejected():
            return False
        self.failures += 1
        if self.probing or self.failures >= self.consecutive_failures:
            self.times_ejected += 1
            seconds = min(self.max_seconds, self.base_seconds * self.times_ejected)
            self.ejected_until = self.clock.now() + timedelta(seconds=seconds)
            self.failures = 0
            self.probing = False
            return True
        return False

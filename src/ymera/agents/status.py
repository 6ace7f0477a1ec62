"""The agent status machine: every legal transition, in one table.

- OFFLINE: not connected, or silent for longer than the health timeout.
- IDLE / ACTIVE / BUSY: connected and healthy, with no / some / full load
  (BUSY = at max concurrency); these follow load automatically.
- PAUSED: an operator stopped routing to it. Sticky: losing the connection
  does not unpause it; resume recomputes the status from connection and load.
- DEGRADED: reachable but unhealthy (slow, failing some calls); still routable.
- ERROR: failing; not routable until it recovers or an operator clears it.
"""

from __future__ import annotations

from enum import StrEnum

from ymera.errors import Conflict


class AgentStatus(StrEnum):
    IDLE = "IDLE"
    ACTIVE = "ACTIVE"
    BUSY = "BUSY"
    PAUSED = "PAUSED"
    DEGRADED = "DEGRADED"
    ERROR = "ERROR"
    OFFLINE = "OFFLINE"


S = AgentStatus
_LIVE = {S.IDLE, S.ACTIVE, S.BUSY}

TRANSITIONS: dict[AgentStatus, frozenset[AgentStatus]] = {
    S.OFFLINE: frozenset({S.IDLE, S.ACTIVE, S.BUSY, S.PAUSED, S.DEGRADED, S.ERROR}),
    S.IDLE: frozenset({S.ACTIVE, S.BUSY, S.PAUSED, S.DEGRADED, S.ERROR, S.OFFLINE}),
    S.ACTIVE: frozenset({S.IDLE, S.BUSY, S.PAUSED, S.DEGRADED, S.ERROR, S.OFFLINE}),
    S.BUSY: frozenset({S.IDLE, S.ACTIVE, S.PAUSED, S.DEGRADED, S.ERROR, S.OFFLINE}),
    S.DEGRADED: frozenset({S.IDLE, S.ACTIVE, S.BUSY, S.PAUSED, S.ERROR, S.OFFLINE}),
    S.ERROR: frozenset({S.IDLE, S.ACTIVE, S.BUSY, S.PAUSED, S.DEGRADED, S.OFFLINE}),
    S.PAUSED: frozenset({S.IDLE, S.ACTIVE, S.BUSY, S.OFFLINE}),
}

# Statuses routing may send work to (capacity permitting).
ROUTABLE: frozenset[AgentStatus] = frozenset({S.IDLE, S.ACTIVE, S.DEGRADED})
# Statuses an operator may set by hand through the API.
MANUAL_TARGETS: frozenset[AgentStatus] = frozenset({S.DEGRADED, S.ERROR, S.OFFLINE})


class IllegalTransition(Conflict):
    code = "illegal_status_transition"


def can_transition(current: AgentStatus, target: AgentStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: AgentStatus, target: AgentStatus) -> None:
    """Raise 409 listing the allowed targets when ``current -> target`` is illegal."""
    if current == target:
        return
    if not can_transition(current, target):
        allowed = sorted(s.value for s in TRANSITIONS[current])
        raise IllegalTransition(
            f"Agent cannot go from {current.value} to {target.value}; "
            f"allowed: {', '.join(allowed)}",
            current=current.value,
            requested=target.value,
            allowed=allowed,
        )


def load_status(load: int, max_concurrency: int) -> AgentStatus:
    """The live status implied by load."""
    if load <= 0:
        return S.IDLE
    if load >= max_concurrency:
        return S.BUSY
    return S.ACTIVE


def follow_load(current: AgentStatus, load: int, max_concurrency: int) -> AgentStatus:
    """Where a change of load moves the status: only live statuses follow load."""
    if current in _LIVE:
        return load_status(load, max_concurrency)
    return current

"""The task state machine: every legal transition, in one table.

PENDING -> ASSIGNED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED | DEAD, plus:

- re-queue edges back to PENDING: a lease that expired, an agent that went
  OFFLINE or handed the task back, a retryable failure with attempts left;
- DEAD when a re-queue would exceed ``max_attempts`` (the dead letter);
- FAILED for a non-retryable failure or a passed deadline;
- manual retry of FAILED or DEAD back to PENDING.
"""

from __future__ import annotations

from enum import StrEnum

from ymera.errors import Conflict


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    ASSIGNED = "ASSIGNED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    DEAD = "DEAD"


T = TaskStatus

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.PENDING: frozenset({T.ASSIGNED, T.CANCELLED, T.FAILED}),
    T.ASSIGNED: frozenset({T.RUNNING, T.PENDING, T.CANCELLED, T.FAILED, T.DEAD}),
    T.RUNNING: frozenset({T.SUCCEEDED, T.FAILED, T.CANCELLED, T.PENDING, T.DEAD}),
    T.SUCCEEDED: frozenset(),
    T.CANCELLED: frozenset(),
    T.FAILED: frozenset({T.PENDING}),
    T.DEAD: frozenset({T.PENDING}),
}

TERMINAL: frozenset[TaskStatus] = frozenset({T.SUCCEEDED, T.FAILED, T.CANCELLED, T.DEAD})
ACTIVE: frozenset[TaskStatus] = frozenset({T.ASSIGNED, T.RUNNING})
CANCELLABLE: frozenset[TaskStatus] = frozenset({T.PENDING, T.ASSIGNED, T.RUNNING})
RETRYABLE_BY_HAND: frozenset[TaskStatus] = frozenset({T.FAILED, T.DEAD})


class IllegalTaskTransition(Conflict):
    code = "illegal_task_transition"


def can_transition(current: TaskStatus, target: TaskStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: TaskStatus, target: TaskStatus) -> None:
    if not can_transition(current, target):
        allowed = sorted(s.value for s in TRANSITIONS[current])
        raise IllegalTaskTransition(
            f"Task cannot go from {current.value} to {target.value}"
            + (f"; allowed: {', '.join(allowed)}" if allowed else f"; {current.value} is final"),
            current=current.value,
            requested=target.value,
            allowed=allowed,
        )

"""The run and step state machines: every legal transition, in one table each.

A run:  RUNNING -> SUCCEEDED | FAILED | CANCELLED, and FAILED -> RUNNING when it
is retried from its failed steps.

A step (any node of a run: a step, a group, a CONSENSUS vote, a fallback):
PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELLED; PENDING -> SKIPPED (a
branch not taken, an upstream step that failed) or CANCELLED (the run ended
first); and back to PENDING from FAILED, CANCELLED and SKIPPED when the run is
retried. SUCCEEDED is final: a retry keeps what succeeded.
"""

from __future__ import annotations

from enum import StrEnum

from ymera.errors import Conflict


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


R = RunStatus
S = StepStatus

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    R.RUNNING: frozenset({R.SUCCEEDED, R.FAILED, R.CANCELLED}),
    R.SUCCEEDED: frozenset(),
    R.FAILED: frozenset({R.RUNNING}),
    R.CANCELLED: frozenset(),
}

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.SKIPPED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset({S.PENDING}),
    S.SKIPPED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset({S.PENDING}),
}

RUN_FINAL: frozenset[RunStatus] = frozenset({R.SUCCEEDED, R.FAILED, R.CANCELLED})
STEP_FINAL: frozenset[StepStatus] = frozenset({S.SUCCEEDED, S.FAILED, S.SKIPPED, S.CANCELLED})


class IllegalRunTransition(Conflict):
    code = "illegal_run_transition"


class IllegalStepTransition(Conflict):
    code = "illegal_step_transition"


def check_run_transition(current: RunStatus, target: RunStatus) -> None:
    if target not in RUN_TRANSITIONS[current]:
        allowed = sorted(s.value for s in RUN_TRANSITIONS[current])
        raise IllegalRunTransition(
            f"Workflow run cannot go from {current.value} to {target.value}"
            + (f"; allowed: {', '.join(allowed)}" if allowed else f"; {current.value} is final"),
            current=current.value,
            requested=target.value,
            allowed=allowed,
        )


def check_step_transition(current: StepStatus, target: StepStatus) -> None:
    if target not in STEP_TRANSITIONS[current]:
        allowed = sorted(s.value for s in STEP_TRANSITIONS[current])
        raise IllegalStepTransition(
            f"Workflow step cannot go from {current.value} to {target.value}",
            current=current.value,
            requested=target.value,
            allowed=allowed,
        )

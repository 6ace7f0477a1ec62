"""The run and step state machines, every pair of states checked."""

from __future__ import annotations

import itertools

import pytest

from ymera.workflows.status import (
    RUN_TRANSITIONS,
    STEP_FINAL,
    STEP_TRANSITIONS,
    IllegalRunTransition,
    IllegalStepTransition,
    RunStatus,
    StepStatus,
    check_run_transition,
    check_step_transition,
)

R, S = RunStatus, StepStatus

RUN_LEGAL = {
    (R.RUNNING, R.SUCCEEDED),
    (R.RUNNING, R.FAILED),
    (R.RUNNING, R.CANCELLED),
    (R.FAILED, R.RUNNING),
}
STEP_LEGAL = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.SKIPPED),
    (S.PENDING, S.CANCELLED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.FAILED, S.PENDING),
    (S.SKIPPED, S.PENDING),
    (S.CANCELLED, S.PENDING),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(R, R)))
def test_every_run_transition(current: RunStatus, target: RunStatus) -> None:
    if (current, target) in RUN_LEGAL:
        check_run_transition(current, target)
    else:
        with pytest.raises(IllegalRunTransition) as refused:
            check_run_transition(current, target)
        assert refused.value.status_code == 409
        assert refused.value.extra["allowed"] == sorted(s.value for s in RUN_TRANSITIONS[current])


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_every_step_transition(current: StepStatus, target: StepStatus) -> None:
    if (current, target) in STEP_LEGAL:
        check_step_transition(current, target)
    else:
        with pytest.raises(IllegalStepTransition):
            check_step_transition(current, target)


def test_tables_cover_every_state_and_succeeded_is_final() -> None:
    assert set(RUN_TRANSITIONS) == set(R)
    assert set(STEP_TRANSITIONS) == set(S)
    assert not STEP_TRANSITIONS[S.SUCCEEDED]
    assert not RUN_TRANSITIONS[R.SUCCEEDED]
    assert not RUN_TRANSITIONS[R.CANCELLED]
    assert S.PENDING not in STEP_FINAL
    assert S.RUNNING not in STEP_FINAL

"""The edit review status machine: every (from, to) pair, legal or not."""

from __future__ import annotations

import itertools

import pytest

from ymera.code.status import (
    TRANSITIONS,
    EditStatus,
    IllegalEditTransition,
    can_transition,
    check_transition,
)

S = EditStatus
LEGAL = {
    (S.PROPOSED, S.APPROVED),
    (S.PROPOSED, S.REJECTED),
    (S.APPROVED, S.APPLIED),
    (S.APPROVED, S.REJECTED),
    (S.APPLIED, S.REVERTED),
}


@pytest.mark.parametrize(
    ("current", "target"), list(itertools.product(EditStatus, EditStatus)), ids=str
)
def test_every_transition(current: EditStatus, target: EditStatus) -> None:
    legal = (current, target) in LEGAL
    assert can_transition(current, target) is legal
    if legal:
        check_transition(current, target)
        return
    with pytest.raises(IllegalEditTransition) as info:
        check_transition(current, target)
    assert info.value.status_code == 409
    assert info.value.extra["allowed"] == sorted(t.value for t in TRANSITIONS[current])


def test_table_covers_every_status_and_final_ones_are_final() -> None:
    assert set(TRANSITIONS) == set(EditStatus)
    assert TRANSITIONS[S.REJECTED] == TRANSITIONS[S.REVERTED] == frozenset()
    # A proposal reaches APPLIED only through a review.
    assert not can_transition(S.PROPOSED, S.APPLIED)

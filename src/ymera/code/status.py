"""Edit review status: every legal transition, in one table.

- PROPOSED: a change recorded but not written; waits for review.
- APPROVED: a reviewer accepted it; it may now be applied (still not written).
- APPLIED: written to the workspace (a reviewed proposal, or a direct change).
- REJECTED: a reviewer refused it (or its author withdrew it). Final.
- REVERTED: it was applied and then undone (revert or undo). Final.

An edit is born PROPOSED (``propose``) or APPLIED (a direct operation, patch or
bulk edit). APPLIED is reached from APPROVED only: a proposal is never written
without a review.
"""

from __future__ import annotations

from enum import StrEnum

from ymera.errors import Conflict


class EditStatus(StrEnum):
    PROPOSED = "PROPOSED"
    APPROVED = "APPROVED"
    APPLIED = "APPLIED"
    REJECTED = "REJECTED"
    REVERTED = "REVERTED"


S = EditStatus

TRANSITIONS: dict[EditStatus, frozenset[EditStatus]] = {
    S.PROPOSED: frozenset({S.APPROVED, S.REJECTED}),
    S.APPROVED: frozenset({S.APPLIED, S.REJECTED}),
    S.APPLIED: frozenset({S.REVERTED}),
    S.REJECTED: frozenset(),
    S.REVERTED: frozenset(),
}


class IllegalEditTransition(Conflict):
    code = "illegal_edit_transition"


def can_transition(current: EditStatus, target: EditStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: EditStatus, target: EditStatus) -> None:
    """Raise 409 naming the allowed targets when ``current -> target`` is illegal
    (staying in the same status is illegal too: approving twice is an error)."""
    if not can_transition(current, target):
        allowed = sorted(s.value for s in TRANSITIONS[current])
        raise IllegalEditTransition(
            f"Edit cannot go from {current.value} to {target.value}; "
            f"allowed: {', '.join(allowed) or 'none (final)'}",
            current=current.value,
            requested=target.value,
            allowed=allowed,
        )

"""The agent status table, checked exhaustively."""

from __future__ import annotations

import itertools

import pytest

from ymera.agents.status import (
    ROUTABLE,
    TRANSITIONS,
    AgentStatus,
    IllegalTransition,
    can_transition,
    check_transition,
    follow_load,
    load_status,
)

S = AgentStatus
ALL = list(AgentStatus)


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(ALL)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(ALL, ALL)))
def test_check_transition_matches_table(current: AgentStatus, target: AgentStatus) -> None:
    legal = current == target or target in TRANSITIONS[current]
    if legal:
        check_transition(current, target)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(current, target)
        assert info.value.status_code == 409
        assert info.value.extra["allowed"] == sorted(s.value for s in TRANSITIONS[current])
        assert target.value in info.value.message


def test_paused_leaves_only_to_live_or_offline() -> None:
    assert TRANSITIONS[S.PAUSED] == {S.IDLE, S.ACTIVE, S.BUSY, S.OFFLINE}
    assert not can_transition(S.PAUSED, S.ERROR)
    assert not can_transition(S.PAUSED, S.DEGRADED)


def test_every_status_can_be_paused_except_paused() -> None:
    for status in ALL:
        if status != S.PAUSED:
            assert can_transition(status, S.PAUSED), status


def test_every_status_is_reachable_from_offline() -> None:
    seen = {S.OFFLINE}
    frontier = [S.OFFLINE]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(ALL)


def test_routable_excludes_unavailable_statuses() -> None:
    assert not ROUTABLE & {S.OFFLINE, S.ERROR, S.PAUSED, S.BUSY}


@pytest.mark.parametrize(
    ("load", "cap", "expected"),
    [(0, 1, S.IDLE), (1, 1, S.BUSY), (1, 3, S.ACTIVE), (3, 3, S.BUSY), (5, 3, S.BUSY)],
)
def test_load_status(load: int, cap: int, expected: AgentStatus) -> None:
    assert load_status(load, cap) == expected


@pytest.mark.parametrize("status", [S.PAUSED, S.DEGRADED, S.ERROR, S.OFFLINE])
def test_only_live_statuses_follow_load(status: AgentStatus) -> None:
    assert follow_load(status, 5, 5) == status
    assert follow_load(S.IDLE, 5, 5) == S.BUSY
    assert follow_load(S.BUSY, 0, 5) == S.IDLE

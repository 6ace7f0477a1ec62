"""Listeners for tasks reaching a final state (SUCCEEDED, FAILED, DEAD, CANCELLED).

Other domains (workflows advancing a run, chat storing an agent's reply) react
to a task ending by registering a listener here. A listener runs inside the
transaction that moves the task, so its writes commit (or roll back) with the
task's own change: nothing is lost between "the task ended" and "the run
advanced". It must be quick, touch only its own tables through its own
domain's service, and ignore tasks that are not its own (most are not).

Listeners are registered once per process by the domain that owns them (the
app factory imports them); registering the same function twice is a no-op.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class TaskFinished:
    """What a listener learns of a task that just ended."""

    id: str
    type: str
    status: str  # SUCCEEDED | FAILED | DEAD | CANCELLED
    attempt: int
    agent_id: str | None
    workflow_step_id: str | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    at: datetime


FinishedListener = Callable[[AsyncSession, TaskFinished], Awaitable[None]]

_listeners: list[FinishedListener] = []


def on_task_finished(listener: FinishedListener) -> FinishedListener:
    """Register ``listener`` (usable as a decorator); idempotent."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def remove_listener(listener: FinishedListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def has_listeners() -> bool:
    return bool(_listeners)


async def notify_finished(session: AsyncSession, finished: TaskFinished) -> None:
    """Run every listener for one task, in registration order."""
    for listener in list(_listeners):
        await listener(session, finished)


@dataclass(frozen=True)
class Outcome:
    """One attempt's outcome (``success`` and ``latency``) or one feedback score,
    for learners (routing). Told inside the transaction that records it."""

    agent_id: str
    task_type: str
    at: datetime
    success: bool | None = None
    latency: float | None = None
    feedback: float | None = None


OutcomeListener = Callable[[AsyncSession, Outcome], Awaitable[None]]
_outcome_listeners: list[OutcomeListener] = []


def on_outcome(listener: OutcomeListener) -> OutcomeListener:
    """Register ``listener`` for every attempt outcome and feedback; idempotent."""
    if listener not in _outcome_listeners:
        _outcome_listeners.append(listener)
    return listener


async def notify_outcome(session: AsyncSession, outcome: Outcome) -> None:
    for listener in list(_outcome_listeners):
        await listener(session, outcome)

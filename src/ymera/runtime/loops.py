"""Background loops: small, idempotent, safe when every replica runs them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import structlog

from ymera.events import repository as events_repository
from ymera.events.service import relay_once
from ymera.kit.aio import wait_any
from ymera.state import AppState

log = structlog.get_logger("ymera.runtime")


async def outbox_relay_loop(state: AppState, stop: asyncio.Event) -> None:
    """Publish the events local commits numbered; woken by each commit."""
    signal = state.db.outbox_signal
    metrics = state.extras.get("metrics")
    poll = state.settings.events.relay_poll_interval
    failures = 0
    while not stop.is_set():
        signal.clear()
        try:
            count = await relay_once(state.db, state.bus)
            failures = 0
        except Exception as exc:
            failures += 1
            log.warning("outbox_relay_failed", error=repr(exc), failures=failures)
            await _wait(stop, min(5.0, 0.1 * 2**failures))
            continue
        if count and metrics is not None:
            metrics.events_published.inc(count)
        await wait_any(stop, signal, timeout=poll)


async def event_retention_loop(state: AppState, stop: asyncio.Event) -> None:
    """Delete events older than the retention window, in small batches."""
    keep = timedelta(days=state.settings.events.retention_days)
    while not stop.is_set():
        try:
            async with state.db.transaction() as session:
                deleted = await events_repository.delete_before(
                    session, state.clock.now() - keep, limit=5000
                )
            if deleted:
                log.info("events_pruned", count=deleted)
                continue
        except Exception as exc:
            log.warning("event_retention_failed", error=repr(exc))
        await _wait(stop, 3600)


async def _wait(stop: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)


LoopFn = Callable[[AppState, asyncio.Event], Coroutine[Any, Any, None]]
DEFAULT_LOOPS: tuple[LoopFn, ...] = (outbox_relay_loop, event_retention_loop)


class Runtime:
    """Starts the background loops and stops them on shutdown."""

    def __init__(self, state: AppState, loops: tuple[LoopFn, ...] = DEFAULT_LOOPS) -> None:
        self.state = state
        self.loops = loops
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for fn in self.loops:
            self.tasks.append(asyncio.create_task(fn(self.state, self.stop), name=fn.__name__))

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Ask every loop to stop; a loop still busy after a short grace is cancelled
        (each is idempotent and transactional, so an interrupted pass is redone later)."""
        self.stop.set()
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=min(timeout, 0.5))
        for task in pending:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

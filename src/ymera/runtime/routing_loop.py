"""Refresh this replica's routing engine from the database: policies and the
learned statistics every replica writes (and, at start, what survived a restart);
before reloading, what this replica's ejections forgot is written to the store.
And solve the learned strategies' opportunity prices when they are due, off the
decision path (``RoutingEngine.solve_prices``)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from ymera.kit.aio import wait_any
from ymera.routing import service as routing_service
from ymera.routing.engine import RoutingEngine
from ymera.routing.learning import service as learning_service
from ymera.state import AppState

log = structlog.get_logger("ymera.routing")


async def refresh_routing(state: AppState) -> None:
    engine: RoutingEngine = state.extras["routing"]
    if engine.forgotten:  # first what ejections forgot, or the reload would restore it
        async with state.db.transaction() as session:
            written = await learning_service.store_forgotten(session, engine=engine)
        engine.forgetting_stored(written)
    async with state.db.transaction(readonly=True) as session:
        await routing_service.refresh(session, engine=engine)
        await learning_service.refresh(session, engine=engine, now=state.clock.now())


async def routing_refresh_loop(state: AppState, stop: asyncio.Event) -> None:
    interval = state.settings.routing.refresh_interval
    while not stop.is_set():
        try:
            await refresh_routing(state)
        except Exception as exc:  # keep routing on what it has
            log.warning("routing_refresh_failed", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def routing_prices_loop(state: AppState, stop: asyncio.Event) -> None:
    """Solve the opportunity prices a learned strategy has due (it signals
    ``engine.prices_due`` instead of solving them inside a claim's decision)."""
    engine: RoutingEngine = state.extras["routing"]
    engine.prices_due = asyncio.Event()  # of this event loop (the engine may be older)
    engine.prices_due.set()  # whatever came due before the loop started
    while not stop.is_set():
        await wait_any(engine.prices_due, stop, timeout=60.0)
        if stop.is_set():
            return
        engine.prices_due.clear()
        try:
            await engine.solve_prices()
        except Exception as exc:  # routing goes on with the prices it has
            log.warning("routing_prices_failed", error=repr(exc))

"""Task engine background loops: dispatcher, lease reaper, deadline sweeper, and
re-queueing the tasks of agents that went OFFLINE. Every replica runs them."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from ymera.events.service import EVENTS_CHANNEL
from ymera.runtime.health_monitor import AGENT_OFFLINE_CHANNEL
from ymera.state import AppState
from ymera.tasks import leases
from ymera.tasks.dispatcher import Dispatcher

log = structlog.get_logger("ymera.tasks.loops")


async def dispatcher_loop(state: AppState, stop: asyncio.Event) -> None:
    dispatcher: Dispatcher = state.extras["dispatcher"]
    await dispatcher.run(stop)


async def dispatcher_wakeup_loop(state: AppState, stop: asyncio.Event) -> None:
    """Wake the dispatcher on task events from any replica (queued or freed work)."""
    dispatcher: Dispatcher = state.extras["dispatcher"]
    if state.bus.name == "memory":
        return  # one replica: its own commits already wake the dispatchers
    async with state.bus.subscribe(EVENTS_CHANNEL) as sub:
        while not stop.is_set():
            message = await sub.get(timeout=1.0)
            if message is None:
                continue
            kind = str(message.data.get("type", ""))
            if kind == "task.pending" or kind == "agent.status_changed":
                dispatcher.wake()  # queued work (or an agent back) anywhere
            if kind.startswith("task.") or kind == "agent.status_changed":
                state.extras["pusher"].wake()


async def reaper_loop(state: AppState, stop: asyncio.Event) -> None:
    """Re-queue expired leases and fail tasks past their deadline."""
    interval = state.settings.tasks.reaper_interval
    while not stop.is_set():
        try:
            now = state.clock.now()
            async with state.db.transaction() as session:
                expired = await leases.requeue_expired(session, now=now)
                late = await leases.fail_past_deadline(session, now=now)
            if expired or late:
                log.info("reaped", expired=len(expired), past_deadline=len(late))
                state.extras["dispatcher"].wake()
        except Exception as exc:
            log.warning("reaper_failed", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def offline_requeue_loop(state: AppState, stop: asyncio.Event) -> None:
    """When the health monitor marks an agent OFFLINE, hand its tasks back at once."""
    async with state.bus.subscribe(AGENT_OFFLINE_CHANNEL) as sub:
        while not stop.is_set():
            message = await sub.get(timeout=1.0)
            if message is None:
                continue
            agent_id = str(message.data.get("agent_id", ""))
            try:
                async with state.db.transaction() as session:
                    tasks = await leases.requeue_agent(
                        session,
                        agent_id=agent_id,
                        now=state.clock.now(),
                        reason="agent went OFFLINE",
                    )
                if tasks:
                    log.info("requeued_offline_agent", agent_id=agent_id, tasks=len(tasks))
                    state.extras["dispatcher"].wake()
            except Exception as exc:
                log.warning("offline_requeue_failed", agent_id=agent_id, error=repr(exc))


async def cancel_relay_loop(state: AppState, stop: asyncio.Event) -> None:
    """Deliver cancels published by other replicas to the workers connected here."""
    from ymera.tasks.endpoints import CANCEL_CHANNEL

    hub = state.extras["hub"]
    async with state.bus.subscribe(CANCEL_CHANNEL) as sub:
        while not stop.is_set():
            message = await sub.get(timeout=1.0)
            if message is None:
                continue
            data = message.data
            conn = hub.get(str(data.get("agent_id", "")))
            task_id = str(data.get("task_id", ""))
            if conn is None or task_id not in conn.held:
                continue  # not here (or already finished)
            conn.held.discard(task_id)
            conn.send(
                {
                    "type": "cancel",
                    "task_id": task_id,
                    "attempt": data.get("attempt"),
                    "reason": str(data.get("reason") or "cancelled"),
                }
            )


async def push_loop(state: AppState, stop: asyncio.Event) -> None:
    """Deliver tasks to http agents."""
    await state.extras["pusher"].run(stop)


async def task_writer_loop(state: AppState, stop: asyncio.Event) -> None:
    """At shutdown, let the group-commit writer finish what is queued."""
    await stop.wait()
    await state.extras["writer"].close()


TASK_LOOPS = (
    cancel_relay_loop,
    task_writer_loop,
    dispatcher_loop,
    dispatcher_wakeup_loop,
    reaper_loop,
    offline_requeue_loop,
    push_loop,
)

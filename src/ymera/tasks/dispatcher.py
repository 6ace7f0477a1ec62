"""The dispatcher: hands queued tasks to the workers connected to this replica.

Each replica assigns only to its own worker connections (it can deliver the
frame itself), so replicas never race for a connection; they do share the
queue, which PostgreSQL hands out with ``FOR UPDATE SKIP LOCKED`` and SQLite
serialises. It wakes on any local commit that recorded events, on every
``task.*`` event from other replicas (through the bus), when a worker
connects or frees a slot, and on a fallback poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from ymera.agents import service as agents_service
from ymera.agents.hub import WorkerHub
from ymera.agents.status import ROUTABLE, AgentStatus
from ymera.kit.aio import wait_any
from ymera.state import AppState
from ymera.tasks import service
from ymera.tasks.routing import AgentSlot, CapabilityLeastLoaded, Router

log = structlog.get_logger("ymera.dispatcher")


def assign_frame(assignment: service.Assignment) -> dict[str, Any]:
    task = assignment.task
    return {
        "type": "assign",
        "task_id": task.id,
        "attempt": task.attempt,
        "lease_token": task.lease_token,
        "lease_expires_at": assignment.lease_expires_at.isoformat(),
        "task_type": task.type,
        "input": task.input,
        "file_ids": task.file_ids,
        "deadline": task.deadline.isoformat() if task.deadline else None,
        "timeout": task.timeout_seconds,
        "priority": task.priority,
    }


class Dispatcher:
    def __init__(self, state: AppState, hub: WorkerHub, router: Router | None = None) -> None:
        self.state = state
        self.hub = hub
        self.router = router or CapabilityLeastLoaded()
        self.signal = asyncio.Event()
        self.assigned = 0

    def wake(self) -> None:
        self.signal.set()

    async def dispatch_once(self) -> int:
        if self.state.extras["draining"].is_set():  # shutting down: claim no new work
            return 0
        conns = {c.agent_id: c for c in self.hub.with_capacity()}
        if not conns:
            return 0
        cfg = self.state.settings.tasks
        now = self.state.clock.now()
        # A read first: on SQLite the claim takes the single writer, so do not
        # take it just to find an empty queue.
        async with self.state.db.transaction(readonly=True) as session:
            if not await service.has_pending(session, now=now):
                return 0
        async with self.state.db.transaction() as session:
            agents = await agents_service.agents_by_id(session, agent_ids=list(conns))
            slots = []
            for agent in agents:
                conn = conns[agent.id]
                if AgentStatus(agent.status) not in ROUTABLE | {AgentStatus.BUSY}:
                    continue
                cap = min(agent.max_concurrency, conn.concurrency)
                slots.append(
                    AgentSlot(
                        agent_id=agent.id,
                        name=agent.name,
                        capabilities={
                            str(c["name"]): float(c.get("proficiency", 0.5))
                            for c in agent.capabilities
                        },
                        load=max(agent.current_load, len(conn.held)),
                        max_concurrency=cap,
                        task_types=conn.task_types,
                    )
                )
            assignments = await service.claim(
                session,
                agents=slots,
                router=self.router,
                now=now,
                lease_seconds=cfg.lease_seconds,
                limit=cfg.claim_batch,
                exclusive=True,
            )
            touched = sorted({a.agent_id for a in assignments})
            if touched:
                await agents_service.sync_status_with_load(session, agent_ids=touched, now=now)
        for assignment in assignments:
            target = self.hub.get(assignment.agent_id)
            if target is None or not target.send(assign_frame(assignment)):
                # The worker went away between claim and send: its lease expires and
                # the reaper re-queues the task.
                log.info("assign_undelivered", task_id=assignment.task.id)
                continue
            target.held.add(assignment.task.id)
        self.assigned += len(assignments)
        return len(assignments)

    async def run(self, stop: asyncio.Event) -> None:
        poll = self.state.settings.tasks.dispatch_poll_interval
        failures = 0
        while not stop.is_set():
            self.signal.clear()
            try:
                count = await self.dispatch_once()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("dispatch_failed", error=repr(exc), failures=failures)
                count = 0
                await _sleep(stop, min(5.0, 0.05 * 2**failures))
            if count:
                continue
            await wait_any(stop, self.signal, timeout=poll)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

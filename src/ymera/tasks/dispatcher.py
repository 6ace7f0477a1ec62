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
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import service as agents_service
from ymera.agents.hub import WorkerConnection, WorkerHub
from ymera.agents.status import ROUTABLE, AgentStatus
from ymera.db import driver
from ymera.kit.aio import wait_any
from ymera.state import AppState
from ymera.tasks import claims
from ymera.tasks.routing import AgentSlot, LeastLoaded, Router

log = structlog.get_logger("ymera.dispatcher")

_DRAINED_AT = "ymera_queue_drained_at"  # session info: a claim emptied the queue

# Task events after which a slot is free again.
FREES_SLOT = frozenset({"task.succeeded", "task.failed", "task.dead", "task.cancelled"})


def assign_frame(assignment: claims.Assignment) -> dict[str, Any]:
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
        "workspace_id": task.workspace_id,
        "workspace_mode": task.workspace_mode,
    }


class Dispatcher:
    def __init__(self, state: AppState, hub: WorkerHub, router: Router | None = None) -> None:
        self.state = state
        self.hub = hub
        self.router = router or LeastLoaded()
        self.signal = asyncio.Event()
        self.assigned = 0
        # Whether queued tasks may be waiting: cleared when a pass finds the queue
        # empty (of anything it can assign), set by anything that may queue work
        # and by the fallback poll (retries whose backoff ends queue no event).
        self._backlog = True
        self._epoch = 0
        # The connection each claimed, not yet delivered task holds a slot on (see
        # _slots).
        self._held_for: dict[str, WorkerConnection] = {}

    @property
    def may_have_backlog(self) -> bool:
        """Whether queued tasks may be waiting for a slot (False once a pass found
        nothing assignable and nothing queued work since)."""
        return self._backlog

    def wake(self, *, backlog: bool = True) -> None:
        """Run a pass soon. ``backlog``: tasks may have been queued (or an agent
        may now take tasks it could not); False when only capacity was freed,
        which needs no pass while the queue is known to be empty."""
        if backlog:
            self._backlog = True
            self._epoch += 1
        self.signal.set()

    def on_commit(self, types: set[str], info: dict[Any, Any]) -> None:
        """A local commit recorded events of these types. Work may be waiting after
        one that queued tasks, or one that changed no task at all (an agent resumed
        or reconnected, say); agent status changes that come with task events only
        follow the load."""
        task_events = {t for t in types if t.startswith("task.")}
        if "task.pending" in task_events or not task_events:
            self.wake()
            drained = info.get(_DRAINED_AT)
            if drained is not None and drained == self._epoch - 1:
                # This commit claimed what it queued and left nothing assignable,
                # and nothing else woke the dispatcher since: no pass needed.
                self._backlog = False
        elif task_events & FREES_SLOT:
            self.wake(backlog=False)

    def _connections(self, freed: dict[str, int] | None = None) -> dict[str, WorkerConnection]:
        """This replica's worker connections with a free slot (counting ``freed``:
        slots the caller's transaction frees, still held until it commits)."""
        if self.state.extras["draining"].is_set():  # shutting down: claim no new work
            return {}
        if not freed:
            return {c.agent_id: c for c in self.hub.with_capacity()}
        return {
            c.agent_id: c
            for c in self.hub.connections()
            if c.free > 0 or (freed.get(c.agent_id, 0) and not (c.draining or c.closed))
        }

    async def dispatch_once(self) -> int:
        conns = self._connections()
        if not conns or not self._backlog:
            return 0
        epoch = self._epoch
        now = self.state.clock.now()
        # A read first: on SQLite the claim takes the single writer, so do not
        # take it just to find an empty queue.
        async with self.state.db.transaction(readonly=True) as session:
            pending = await claims.has_pending(session, now=now)
        if pending:
            claimed: list[claims.Assignment] = []
            try:
                async with self.state.db.transaction() as session:
                    await driver.by_key_only(await session.connection())
                    assignments, drained = await self._claim(session, conns, now)
                    claimed = assignments
            except BaseException:
                self.abandon(claimed)
                raise
        else:
            assignments, drained = [], True
        if drained and epoch == self._epoch:
            self._backlog = False  # nothing assignable is left (and nothing new came)
        return self.deliver(assignments)

    async def claim_within(
        self, session: AsyncSession, *, freed: dict[str, int] | None = None
    ) -> list[claims.Assignment]:
        """Claim in the caller's transaction (the group-commit writer's, right after
        it inserted new tasks: one commit for both); the caller moves the agents'
        status with their load (``sync_status_with_load``, once for the whole
        batch) and delivers with :meth:`deliver` once it has committed. An error fails the caller's
        transaction (the writer then replays its items without claiming, and the
        dispatcher's own pass assigns the tasks). ``freed``: slots per agent that
        this transaction's reports free (their tasks are still in ``held``)."""
        conns = self._connections(freed)
        if not conns:
            return []
        epoch = self._epoch
        assignments, drained = await self._claim(
            session, conns, self.state.clock.now(), sync_status=False, freed=freed
        )
        if drained:
            session.info[_DRAINED_AT] = epoch  # see on_commit
        return assignments

    async def _slots(
        self,
        session: AsyncSession,
        conns: dict[str, WorkerConnection],
        freed: dict[str, int] | None = None,
    ) -> tuple[list[AgentSlot], dict[WorkerConnection, tuple[int, int]]]:
        """The routable agents behind these connections, with their free slots,
        which this claim takes at once (``conn.claiming``; returned per
        connection): a claim running at the same time (another writer lane, the
        dispatcher's own pass) sees them taken. :meth:`_keep` gives back what the
        claim did not use; :meth:`deliver` or :meth:`abandon` what it did.

        The slots the caller's own reports free (``freed``) are free to this
        claim only: every other claim still counts their tasks as held, so they
        are not taken in ``conn.claiming`` (counted there as well, a concurrent
        claim saw them taken twice and left as many slots of its own empty)."""
        freed = freed or {}
        # Load changes this transaction made and has not written yet (reports).
        pending = agents_service.pending_load(session)
        rows = await agents_service.dispatch_rows(session, agent_ids=list(conns))
        # From here to the reservation below: no await (claims interleave only there).
        slots = []
        taken: dict[WorkerConnection, tuple[int, int]] = {}  # (slots taken, own of them)
        for agent in rows:
            conn = conns[agent.id]
            if conn.closed or AgentStatus(agent.status) not in ROUTABLE | {AgentStatus.BUSY}:
                continue
            slot = AgentSlot(
                agent_id=agent.id,
                name=agent.name,
                capabilities={
                    str(c["name"]): float(c.get("proficiency", 0.5)) for c in agent.capabilities
                },
                load=max(
                    agent.current_load + pending.get(agent.id, 0),
                    len(conn.held) - freed.get(agent.id, 0) + conn.claiming,
                ),
                max_concurrency=min(agent.max_concurrency, conn.concurrency),
                task_types=conn.task_types,
                agent_type=agent.type,
            )
            own = min(freed.get(agent.id, 0), slot.free)
            conn.claiming += slot.free - own
            taken[conn] = (slot.free, own)
            slots.append(slot)
        return slots, taken

    def _keep(
        self,
        taken: dict[WorkerConnection, tuple[int, int]],
        assignments: list[claims.Assignment],
    ) -> None:
        """After a claim: keep a slot per assignment (until delivered or
        abandoned), give back the others it took. Assignments fill the claim's
        own freed slots first (in no one else's count: nothing to keep), then
        the shared ones it took."""
        by_agent = {conn.agent_id: conn for conn in taken}
        used: dict[WorkerConnection, int] = {}
        for a in assignments:
            conn = by_agent[a.agent_id]
            n = used[conn] = used.get(conn, 0) + 1
            if n > taken[conn][1]:
                self._held_for[a.task.id] = conn
        for conn, (count, own) in taken.items():
            conn.claiming -= (count - own) - max(0, used.get(conn, 0) - own)

    def abandon(self, assignments: list[claims.Assignment]) -> None:
        """Claimed assignments whose transaction did not commit: free their slots."""
        for a in assignments:
            conn = self._held_for.pop(a.task.id, None)
            if conn is not None:
                conn.claiming -= 1

    async def assign_new_within(
        self,
        session: AsyncSession,
        rows: list[dict[str, Any]],
        *,
        freed: dict[str, int] | None = None,
    ) -> list[claims.Assignment]:
        """Assign tasks the caller's transaction is submitting, before they are
        inserted, when no older task waits (see ``claims.assign_new``); the
        caller syncs status with load and delivers once committed, as with
        :meth:`claim_within`."""
        conns = self._connections(freed)
        if not conns or not rows:
            return []
        epoch = self._epoch
        slots, taken = await self._slots(session, conns, freed)
        assignments = []
        try:
            assignments = claims.assign_new(
                session,
                rows=rows,
                agents=slots,
                router=self.router,
                now=self.state.clock.now(),
                lease_seconds=self.state.settings.tasks.lease_seconds,
                limit=self.state.settings.tasks.claim_batch,
            )
        finally:
            self._keep(taken, assignments)
        if len(assignments) == len(rows):
            session.info[_DRAINED_AT] = epoch  # everything queued is assigned: see on_commit
        return assignments

    async def _claim(
        self,
        session: AsyncSession,
        conns: dict[str, WorkerConnection],
        now: datetime,
        *,
        sync_status: bool = True,
        freed: dict[str, int] | None = None,
    ) -> tuple[list[claims.Assignment], bool]:
        """Claim for these connections; also returns whether the queue is drained
        (fewer tasks were assignable than there were free slots)."""
        cfg = self.state.settings.tasks
        slots, taken = await self._slots(session, conns, freed)
        assignments = []
        try:
            assignments = await claims.claim(
                session,
                agents=slots,
                router=self.router,
                now=now,
                lease_seconds=cfg.lease_seconds,
                limit=cfg.claim_batch,
                exclusive=True,
            )
        finally:
            self._keep(taken, assignments)
        touched = sorted({a.agent_id for a in assignments})
        if touched and sync_status:
            await agents_service.sync_status_with_load(session, agent_ids=touched, now=now)
        free = sum(slot.free for slot in slots) + len(assignments)
        return assignments, len(assignments) < min(free, cfg.claim_batch)

    def deliver(self, assignments: list[claims.Assignment]) -> int:
        """Send committed assignments to their workers."""
        for assignment in assignments:
            reserved = self._held_for.pop(assignment.task.id, None)
            if reserved is not None:
                reserved.claiming -= 1
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
            if not self.signal.is_set():
                self.wake()  # the fallback poll: look at the queue anyway


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

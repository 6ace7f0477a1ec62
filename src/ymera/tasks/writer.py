"""Group commit for the task engine's hot writes: submissions and agents'
reports (accept, progress, result, fail, release).

Submissions from every HTTP request and reports from every worker connection of
this replica queue here, each kind in arrival order (a commit takes the reports
before the submissions: see ``TaskWriter._flush``); one writer applies what is
queued in a single transaction, so under load hundreds of submits and results cost one
commit instead of hundreds, and each caller is answered only once its write is
committed. The tasks a batch's reports touch are locked and loaded with one
query; new tasks are inserted with one multi-row INSERT; agents' load moves
once per agent. When idle an item is applied at once (a batch of one). An item
refused by its fence (a stale attempt), or a submission naming an unknown
workspace, fails alone; if the whole transaction fails, the batch is replayed
one item per transaction.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import service as agents_service
from ymera.db import driver
from ymera.errors import YmeraError
from ymera.state import AppState
from ymera.tasks import repository
from ymera.tasks.service import StaleLease, TaskNotFound, UnknownWorkspace, WorkspaceNotReadable

# Refusals raised before their item wrote anything: they fail that item alone.
_REFUSALS = (StaleLease, TaskNotFound, UnknownWorkspace, WorkspaceNotReadable)

log = structlog.get_logger("ymera.reports")

Op = Callable[[AsyncSession], Awaitable[Any]]
# Writes per group commit at most, each weighing the tasks it writes (a batch
# submit of 500 weighs 500). With a deep backlog (the dispatch benchmark's
# batches) larger commits cost less per task: 2,000 with claims of up to 1,024
# (tasks.claim_batch) gave 4,492 tasks/s against 4,223 for 500 and 256 on SQLite
# (3 alternated pairs, docs/benchmarks.md).
MAX_BATCH = 2000


@dataclass
class _Item:
    op: Op
    agent_id: str | None
    task_id: str | None
    creates_work: bool
    frees_slot: bool = False
    weight: int = 1
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class TaskWriter:
    """The group-commit writer. No loop of its own: the first write queued while
    none is being applied starts a flusher task, which applies batches until the
    queue is empty (so a write waits at most for the batch in flight).

    On PostgreSQL it runs ``lanes`` such queues side by side (SQLite has one
    writer at a time: one lane): while one lane's transaction waits for the
    database, another's runs. Writes go to the first lane until it has
    ``spill`` tasks' worth of them queued (so light and moderate load keeps one
    large group commit), then to the lane with the least queued; a task's writes
    stay in the lane of its first one still pending (so a task's reports stay in
    order). A write weighs the tasks it writes (a batch submit of 500: 500).
    Claims in different lanes take their slots in memory first
    (``Dispatcher._slots``), so they never fill the same free slot twice, and the
    rows lanes share (the agents') are written at the end of each transaction.
    """

    def __init__(self, state: AppState, *, lanes: int = 1, spill: int = 128) -> None:
        self.state = state
        self.lanes = max(1, lanes)
        self.spill = max(1, spill)
        # Per lane: agents' reports and every other write, in order; and new work
        # (submissions), which waits behind them (see _flush).
        self.queues: list[collections.deque[_Item]] = [
            collections.deque() for _ in range(self.lanes)
        ]
        self.intake: list[collections.deque[_Item]] = [
            collections.deque() for _ in range(self.lanes)
        ]
        self.queued = [0] * self.lanes  # the weight each lane has queued
        self.batches = 0
        self.applied = 0
        self._flushers: list[asyncio.Task[None] | None] = [None] * self.lanes
        # task id -> (its lane, writes of it still pending), with several lanes
        self._task_lanes: dict[str, tuple[int, int]] = {}

    def submit(
        self,
        op: Op,
        *,
        agent_id: str | None = None,
        task_id: str | None = None,
        creates_work: bool = False,
        frees_slot: bool = False,
        weight: int = 1,
    ) -> asyncio.Future[Any]:
        """Queue a write (in order); the future resolves when it is committed.

        ``task_id``: the task the op changes (locked for the batch up front);
        ``agent_id``: the agent reporting (the batch's lock order, and its lane);
        ``creates_work``: the op queues tasks (a submit): the batch then also
        assigns what it can to this replica's workers, in the same commit;
        ``frees_slot``: the op ends the agent's hold on its task (a result, a
        failure, a hand-back): while tasks wait, the batch refills the slots it
        freed, in the same commit (no separate dispatcher transaction);
        ``weight``: the tasks it writes (a batch submit's size), what the lanes'
        queues and the commits' size count.
        """
        item = _Item(op, agent_id, task_id, creates_work, frees_slot, max(1, weight))
        lane = self._enqueue(item)
        flusher = self._flushers[lane]
        if flusher is None or flusher.done():
            self._flushers[lane] = asyncio.get_running_loop().create_task(
                self._flush(lane), name=f"task-writer-{lane}"
            )
        return item.future

    def _enqueue(self, item: _Item) -> int:
        """Queue ``item`` in its lane; returns the lane."""
        lane = 0 if self.lanes == 1 else self._lane_for(item)
        (self.intake if item.creates_work else self.queues)[lane].append(item)
        self.queued[lane] += item.weight
        return lane

    def _lane_for(self, item: _Item) -> int:
        task_id = item.task_id
        if task_id is not None and task_id in self._task_lanes:
            lane, pending = self._task_lanes[task_id]
        else:
            lane, pending = 0, 0
            if self.queued[0] >= self.spill:
                lane = min(range(self.lanes), key=lambda i: self.queued[i])
        if task_id is not None:
            self._task_lanes[task_id] = (lane, pending + 1)
            item.future.add_done_callback(lambda _: self._written(task_id))
        return lane

    def _written(self, task_id: str) -> None:
        lane, pending = self._task_lanes.pop(task_id)
        if pending > 1:
            self._task_lanes[task_id] = (lane, pending - 1)

    async def _flush(self, lane: int) -> None:
        queue, intake = self.queues[lane], self.intake[lane]
        while queue or intake:
            # One loop turn first: callbacks already runnable (requests parsed,
            # frames read in the same iteration) queue their writes and join this
            # batch. Measured: single submits 15% less server CPU per task (fewer,
            # larger batches); more turns gained nothing.
            await asyncio.sleep(0)
            # Work in progress first (reports free the slots this commit refills
            # from the queue), then new work, at least one submission a commit
            # (so none waits behind reports for ever): a burst of submissions
            # keeps the workers busy from its first commit instead of holding
            # their reports back until all of it is in.
            batch: list[_Item] = []
            weight = 0
            for source in (queue, intake):
                while source and (weight + source[0].weight <= MAX_BATCH or not batch):
                    item = source.popleft()
                    batch.append(item)
                    weight += item.weight
            if intake and not any(item.creates_work for item in batch):
                item = intake.popleft()
                batch.append(item)
                weight += item.weight
            self.queued[lane] -= weight
            await self._apply(batch)

    async def close(self) -> None:
        """Wait until everything queued is committed (at shutdown)."""
        for lane in range(self.lanes):
            while (flusher := self._flushers[lane]) is not None and not flusher.done():
                await asyncio.shield(flusher)

    async def _apply(self, batch: list[_Item], *, claim: bool = True) -> None:
        outcomes: list[tuple[_Item, Any, BaseException | None]] = []
        assignments: list[Any] = []
        dispatcher = self.state.extras.get("dispatcher")
        try:
            await self._transact(batch, claim, dispatcher, outcomes, assignments)
        except Exception as exc:
            if assignments and dispatcher is not None:
                dispatcher.abandon(assignments)  # never committed: free their slots
            await self._retry(batch, claim, exc)
            return
        self.batches += 1
        self.applied += len(batch)
        metrics = self.state.extras.get("metrics")
        if metrics is not None:
            metrics.task_writer_commits.inc()
            metrics.task_writer_writes.inc(len(batch))
        if assignments and dispatcher is not None:
            dispatcher.deliver(assignments)
        for item, result, error in outcomes:
            _resolve(item, result, error)

    async def _transact(
        self,
        batch: list[_Item],
        claim: bool,
        dispatcher: Any,
        outcomes: list[tuple[_Item, Any, BaseException | None]],
        assignments: list[Any],
    ) -> None:
        """One transaction: the batch's operations, then (with ``claim``) waiting
        work assigned to the slots the batch freed or the tasks it created.
        ``outcomes`` and ``assignments`` are filled in place, so that a commit
        that fails still knows what it assigned."""
        # Reports of one task share an agent, so a stable sort by agent keeps each
        # task's reports in order while every batch locks agent rows in one order
        # (no deadlocks between replicas' batches).
        ordered = sorted(batch, key=lambda i: i.agent_id or "")
        async with self.state.db.transaction() as session:
            await driver.by_key_only(await session.connection())
            await repository.lock_rows(session, [i.task_id for i in batch if i.task_id])
            for item in ordered:
                try:
                    outcomes.append((item, await item.op(session), None))
                except _REFUSALS as exc:
                    outcomes.append((item, None, exc))
            await repository.save_rows(session)
            if claim and dispatcher is not None:
                assignments.extend(await _claim(session, batch, outcomes, dispatcher))
            # Each agent's load moves once for the whole batch (reports and claim).
            agents = sorted(
                {i.agent_id for i in batch if i.agent_id} | {a.agent_id for a in assignments}
            )
            if agents:  # at the end of the transaction (the lanes' shared rows)
                agents_service.follow_load_at_commit(
                    session, agent_ids=agents, now=self.state.clock.now()
                )

    async def _retry(self, batch: list[_Item], claim: bool, exc: Exception) -> None:
        """After a failed transaction: one item once more without the claim (then
        its error); a batch item by item, without the claim (the dispatcher's own
        pass assigns their tasks)."""
        if len(batch) == 1:
            if claim and (batch[0].creates_work or batch[0].frees_slot):
                await self._apply(batch, claim=False)  # once more, without the claim
                return
            _resolve(batch[0], None, exc)
            return
        log.warning("report_batch_failed", size=len(batch), error=repr(exc))
        for item in batch:
            await self._apply([item], claim=False)


async def _claim(
    session: Any,
    batch: list[_Item],
    outcomes: list[tuple[_Item, Any, BaseException | None]],
    dispatcher: Any,
) -> list[Any]:
    """Inside a batch's transaction: waiting work assigned to the slots its
    reports freed, or its new tasks assigned; nothing if it did neither."""
    freed: dict[str, int] = {}
    for item, _, error in outcomes:
        if item.frees_slot and error is None and item.agent_id is not None:
            freed[item.agent_id] = freed.get(item.agent_id, 0) + 1
    creates = any(i.creates_work for i in batch)
    if creates and not dispatcher.may_have_backlog:
        # Nothing older waits: the new tasks are the queue. They are inserted
        # already assigned (no read back, no update).
        new_rows = repository.deferred_rows(session)
        out: list[Any] = await dispatcher.assign_new_within(session, new_rows, freed=freed)
        return out
    if creates or (freed and dispatcher.may_have_backlog):
        if creates:
            await repository.flush_deferred(session)  # the claim must see them
        claimed: list[Any] = await dispatcher.claim_within(session, freed=freed)
        return claimed
    return []


def _resolve(item: _Item, result: Any, error: BaseException | None) -> None:
    if item.future.done():
        return
    if error is None:
        item.future.set_result(result)
    elif isinstance(error, YmeraError):
        item.future.set_exception(error)
    else:
        item.future.set_exception(error)

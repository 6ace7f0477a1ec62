"""Group commit for agents' reports (accept, progress, result, fail, release).

Reports from every worker connection of this replica queue here in arrival
order; one writer applies whatever is queued in a single transaction, so under
load hundreds of results cost one commit instead of hundreds. When idle a
report is applied at once (a batch of one). A report refused by its fence
(a stale attempt) fails alone; if the whole transaction fails, the batch is
replayed one report per transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import service as agents_service
from ymera.errors import YmeraError
from ymera.state import AppState
from ymera.tasks.service import StaleLease, TaskNotFound

log = structlog.get_logger("ymera.reports")

Op = Callable[[AsyncSession], Awaitable[Any]]
MAX_BATCH = 500


@dataclass
class _Item:
    op: Op
    agent_id: str | None
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ReportWriter:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.batches = 0
        self.applied = 0

    def submit(self, op: Op, *, agent_id: str | None = None) -> asyncio.Future[Any]:
        """Queue a report (in order); the future resolves when it is committed."""
        item = _Item(op, agent_id)
        self.queue.put_nowait(item)
        return item.future

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            getter = asyncio.ensure_future(self.queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                break
            stopper.cancel()
            batch = [getter.result()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            await self._apply(batch)
        # Whatever is still queued at shutdown is applied before leaving.
        rest = []
        while not self.queue.empty():
            rest.append(self.queue.get_nowait())
        if rest:
            await self._apply(rest)

    async def _apply(self, batch: list[_Item]) -> None:
        outcomes: list[tuple[_Item, Any, BaseException | None]] = []
        try:
            # Reports of one task share an agent, so a stable sort by agent keeps each
            # task's reports in order while every batch locks agent rows in one order
            # (no deadlocks between replicas' batches).
            ordered = sorted(batch, key=lambda i: i.agent_id or "")
            async with self.state.db.transaction() as session:
                for item in ordered:
                    try:
                        outcomes.append((item, await item.op(session), None))
                    except (StaleLease, TaskNotFound) as exc:
                        outcomes.append((item, None, exc))
                agents = sorted({i.agent_id for i in batch if i.agent_id})
                if agents:
                    await agents_service.sync_status_with_load(
                        session, agent_ids=agents, now=self.state.clock.now()
                    )
        except Exception as exc:
            if len(batch) == 1:
                _resolve(batch[0], None, exc)
                return
            log.warning("report_batch_failed", size=len(batch), error=repr(exc))
            for item in batch:
                await self._apply([item])
            return
        self.batches += 1
        self.applied += len(batch)
        for item, result, error in outcomes:
            _resolve(item, result, error)


def _resolve(item: _Item, result: Any, error: BaseException | None) -> None:
    if item.future.done():
        return
    if error is None:
        item.future.set_result(result)
    elif isinstance(error, YmeraError):
        item.future.set_exception(error)
    else:
        item.future.set_exception(error)

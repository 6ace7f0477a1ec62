"""Telling agents that a workflow cancelled the task they hold, once the
transaction that cancelled it has committed (as ``POST /tasks/{id}/cancel`` does).

A workflow cancels tasks inside a transaction that may be a task writer's batch
or a request's; the tasks to tell about are remembered on the session and sent
by a listener of the database's commits. Should the message be lost (a crash
right after the commit), the worker's next heartbeat is answered with
``cancel`` (``lease lost``), so the agent still learns of it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.state import AppState
from ymera.tasks.service import LeaseRef

log = structlog.get_logger("ymera.workflows")

CANCELLING = "ymera_workflow_cancelling"  # session info: task ids a workflow is cancelling
_TO_TELL = "ymera_workflow_cancels"  # session info: (lease, agent, reason) to send after commit


def remember(session: AsyncSession, held: LeaseRef, agent_id: str, reason: str) -> None:
    session.info.setdefault(_TO_TELL, []).append((held, agent_id, reason))


def install(state: AppState) -> None:
    """Send the remembered cancels after each commit (on this replica's workers at
    once; to other replicas' through the bus, like the cancel endpoint)."""
    jobs: set[asyncio.Task[None]] = set()
    state.extras["workflow_cancel_jobs"] = jobs

    def on_commit(types: set[str], info: dict[Any, Any]) -> None:
        items = info.pop(_TO_TELL, None)
        info.pop(CANCELLING, None)
        if not items:
            return
        job = asyncio.get_running_loop().create_task(_tell(state, items))
        jobs.add(job)
        job.add_done_callback(jobs.discard)

    state.db.add_event_listener(on_commit)


async def _tell(state: AppState, items: list[tuple[LeaseRef, str, str]]) -> None:
    from ymera.agents import repository as agents_repository
    from ymera.tasks.endpoints import CANCEL_CHANNEL

    hub = state.extras["hub"]
    for held, agent_id, reason in items:
        frame = {
            "type": "cancel",
            "task_id": held.task_id,
            "attempt": held.attempt,
            "reason": reason,
        }
        try:
            conn = hub.get(agent_id)
            if conn is not None:
                conn.held.discard(held.task_id)
                conn.send(frame)
                continue
            async with state.db.transaction(readonly=True) as session:
                agent = await agents_repository.get(session, agent_id)
            if agent is not None and agent.connection_mode == "http" and agent.endpoint_url:
                state.extras["pusher"].send_cancel(
                    str(agent.endpoint_url),
                    task_id=held.task_id,
                    attempt=held.attempt,
                    reason=reason,
                )
                continue
            await state.bus.publish(
                CANCEL_CHANNEL,
                {
                    "task_id": held.task_id,
                    "attempt": held.attempt,
                    "agent_id": agent_id,
                    "reason": reason,
                },
            )
        except Exception as exc:  # the heartbeat's "lease lost" still tells the worker
            log.info("workflow_cancel_untold", task_id=held.task_id, error=repr(exc)[:200])

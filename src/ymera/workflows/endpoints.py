"""`/api/v1/workflows` (definitions, versioned) and `/api/v1/workflow-runs`
(start, get, list, cancel, retry, and a live SSE view of one run)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.auth.dependencies import require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.errors import SHUTTING_DOWN_RESPONSES
from ymera.events import service as events_service
from ymera.kit.pagination import Page
from ymera.middleware import accepting_work
from ymera.models.workflows import WorkflowRun, WorkflowStep
from ymera.state import AppState, DbSession, State
from ymera.tasks.schemas import RetryPolicy
from ymera.workflows import service
from ymera.workflows.schemas import (
    RunCreate,
    RunDetail,
    RunOut,
    StepOut,
    WorkflowCreate,
    WorkflowOut,
)
from ymera.workflows.status import RunStatus

workflows_router = APIRouter(prefix="/api/v1/workflows", tags=["workflows"])
runs_router = APIRouter(prefix="/api/v1/workflow-runs", tags=["workflows"])

Read = Annotated[Principal, Depends(require(Permission.WORKFLOWS_READ))]
Write = Annotated[Principal, Depends(require(Permission.WORKFLOWS_WRITE))]
RUN_FINAL_EVENTS = frozenset(
    {"workflow_run.succeeded", "workflow_run.failed", "workflow_run.cancelled"}
)
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid definition: `problems` lists each JSON path and why"}
}


def _detail(run: WorkflowRun, steps: Sequence[WorkflowStep]) -> RunDetail:
    return RunDetail.model_validate(
        {
            **RunOut.model_validate(run).model_dump(),
            "steps": [StepOut.model_validate(s) for s in steps],
        }
    )


def _retry_default(state: AppState) -> RetryPolicy:
    cfg = state.settings.tasks
    return RetryPolicy(
        max_attempts=cfg.max_attempts,
        initial=cfg.retry_initial,
        factor=cfg.retry_factor,
        cap=cfg.retry_cap,
    )


# --- definitions -------------------------------------------------------------------------


@workflows_router.post("", response_model=WorkflowOut, status_code=201, responses=_INVALID)
async def create_workflow(
    body: WorkflowCreate, session: DbSession, state: State, principal: Write
) -> WorkflowOut:
    """Create a workflow definition. A name that exists gets its next version
    (runs started by name use the latest). 422 `invalid_workflow` lists every
    problem with its JSON path: unknown step references, cycles, unreachable
    branches, bad expressions."""
    workflow = await service.create_workflow(
        session, principal=principal, spec=body, now=state.clock.now()
    )
    return WorkflowOut.model_validate(workflow)


@workflows_router.post("/validate", responses=_INVALID)
async def validate_workflow(body: WorkflowCreate, _: Read) -> dict[str, Any]:
    """Check a definition without storing it: `{"valid": true}`, or 422 like create."""
    service.validate(body)
    return {"valid": True}


@workflows_router.get("", response_model=Page[WorkflowOut])
async def list_workflows(
    session: DbSession,
    _: Read,
    name: Annotated[str | None, Query(max_length=100, description="Its versions.")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[WorkflowOut]:
    """List workflow definitions (every version), newest first."""
    page = await service.list_workflows(session, name=name, cursor=cursor, limit=limit)
    return Page[WorkflowOut](
        items=[WorkflowOut.model_validate(w) for w in page.items], next_cursor=page.next_cursor
    )


@workflows_router.get("/{workflow_ref}", response_model=WorkflowOut)
async def get_workflow(workflow_ref: str, session: DbSession, _: Read) -> WorkflowOut:
    """One workflow version: by id, or by name (its latest version)."""
    return WorkflowOut.model_validate(await service.resolve_workflow(session, ref=workflow_ref))


# --- runs --------------------------------------------------------------------------------


@runs_router.post(
    "",
    response_model=RunDetail,
    status_code=201,
    responses=SHUTTING_DOWN_RESPONSES,
    dependencies=[Depends(accepting_work)],
)
async def start_run(
    body: RunCreate, session: DbSession, state: State, principal: Write
) -> RunDetail:
    """Start a run of a workflow (by name: its latest version; or by id) with an
    input. Its first steps' tasks are submitted before this answers."""
    run, steps = await service.start_run(
        session,
        principal=principal,
        workflow_ref=body.workflow,
        run_input=body.input,
        now=state.clock.now(),
        default_retry=_retry_default(state),
    )
    return _detail(run, steps)


@runs_router.get("", response_model=Page[RunOut])
async def list_runs(
    session: DbSession,
    principal: Read,
    status: Annotated[list[RunStatus] | None, Query(description="Repeatable.")] = None,
    workflow: Annotated[
        str | None, Query(max_length=100, description="A workflow name or id.")
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[RunOut]:
    """List runs, newest first (yours; everyone's with tasks:operate)."""
    page = await service.list_runs(
        session,
        principal=principal,
        statuses=[s.value for s in status or []],
        workflow=workflow,
        cursor=cursor,
        limit=limit,
    )
    return Page[RunOut](
        items=[RunOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor
    )


@runs_router.get("/{run_id}", response_model=RunDetail)
async def get_run(run_id: str, session: DbSession, principal: Read) -> RunDetail:
    """A run with every step's state, input, output, error and task."""
    run, steps = await service.get_run(session, principal=principal, run_id=run_id)
    return _detail(run, steps)


@runs_router.post("/{run_id}/cancel", response_model=RunDetail)
async def cancel_run(
    run_id: str,
    state: State,
    principal: Write,
    reason: Annotated[str | None, Query(max_length=500)] = None,
) -> RunDetail:
    """Cancel a RUNNING run: its running tasks are cancelled (their agents told),
    its unfinished steps become CANCELLED. 409 if the run is already final."""

    async def work(session: AsyncSession) -> RunDetail:
        run, steps = await service.cancel_run(
            session, principal=principal, run_id=run_id, now=state.clock.now(), reason=reason
        )
        return _detail(run, steps)

    # Cancelling locks the run's tasks, then the run, while a task of the run
    # ending at the same moment (another batch, another replica) holds its task
    # and may want the others: a deadlock's victim simply runs again.
    return await state.db.run_in_transaction(work)


@runs_router.post("/{run_id}/retry", response_model=RunDetail)
async def retry_run(run_id: str, state: State, principal: Write) -> RunDetail:
    """Retry a FAILED run from its failed steps: what succeeded is kept, the
    failed, skipped and cancelled steps run again. 409 for any other state."""

    async def work(session: AsyncSession) -> RunDetail:
        run, steps = await service.retry_run(
            session, principal=principal, run_id=run_id, now=state.clock.now()
        )
        return _detail(run, steps)

    return await state.db.run_in_transaction(work)  # locks as cancel_run does


@runs_router.get(
    "/{run_id}/events",
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def run_events(
    run_id: str,
    state: State,
    principal: Read,
    last_event_id: Annotated[str, Header(alias="Last-Event-ID", pattern=r"^[0-9]*$")] = "",
) -> StreamingResponse:
    """Follow a run live (SSE): every run and step transition (`workflow_run.*`,
    `workflow_step.*`), from the run's first event (or after `Last-Event-ID`),
    each with its `id:` (the event's seq) for resuming. Ends after the run's
    final event."""
    async with state.db.transaction(readonly=True) as session:
        run = await service.visible_run(session, principal=principal, run_id=run_id)
        final = service.is_final(run)
    cursor = int(last_event_id) if last_event_id else 0
    flt = events_service.EventFilter(resource_type="workflow_run", resource_id=run_id)

    async def replay() -> AsyncIterator[bytes]:
        after = cursor
        while True:
            page = await events_service.list_events(state.db, flt=flt, after=after, limit=500)
            for event in page:
                yield _sse(event.model_dump(mode="json"))
            if len(page) < 500:
                return
            after = int(page[-1].seq or after)

    async def follow() -> AsyncIterator[bytes]:
        live = False
        async for batch in events_service.stream_events(
            state.db,
            state.bus,
            flt=flt,
            after=cursor,
            keepalive=state.settings.events.sse_keepalive_seconds,
        ):
            if batch is None:
                yield b": keepalive\n\n" if live else b"retry: 2000\n: live\n\n"
                live = True
                continue
            for payload in batch:
                yield _sse(payload)
                if payload.get("type") in RUN_FINAL_EVENTS:
                    return

    return StreamingResponse(
        replay() if final else follow(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _sse(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    return f"id: {payload['seq']}\nevent: {payload['type']}\ndata: {data}\n\n".encode()

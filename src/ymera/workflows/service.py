"""Workflow rules: definitions (versioned), runs (start, get, list, cancel,
retry), and advancing a run when one of its tasks ends.

A run advances inside the transaction that ends its step's task: the task
engine calls :func:`on_task_finished` (a ``ymera.tasks.hooks`` listener) there,
which records the step's outcome, submits the steps that became runnable (or
ends the run) and records an event per transition, all in that transaction. So
a crash can neither lose an advance nor make one twice, and a step runs again
only when its task is re-leased by the task engine. The run's row is locked
first, so two of its tasks ending at once advance it one after the other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import service as agents_service
from ymera.agents.schemas import AgentType
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.errors import Conflict, Unprocessable
from ymera.events.outbox import record_event
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.workflows import Workflow, WorkflowRun, WorkflowStep
from ymera.tasks import hooks
from ymera.tasks import service as tasks_service
from ymera.tasks.schemas import RetryPolicy, TaskCreate
from ymera.tasks.status import IllegalTaskTransition
from ymera.workflows import cancels, repository
from ymera.workflows.engine import Engine, Start, reset_for_retry
from ymera.workflows.errors import (
    RunFinished,
    RunNotFound,
    RunNotRetryable,
    WorkflowNotFound,
)
from ymera.workflows.plan import Plan, compile_definition, compile_plan
from ymera.workflows.schemas import Strategy, WorkflowCreate
from ymera.workflows.status import (
    RUN_FINAL,
    RunStatus,
    StepStatus,
    check_run_transition,
)

log = structlog.get_logger("ymera.workflows")

R = RunStatus
S = StepStatus
MAX_RUN_INPUT_BYTES = 1024 * 1024
_PLANS: dict[str, Plan] = {}  # workflow id -> compiled plan (versions never change)
_PLAN_CACHE_SIZE = 256


# --- definitions -------------------------------------------------------------------------


async def create_workflow(
    session: AsyncSession, *, principal: Principal, spec: WorkflowCreate, now: datetime
) -> Workflow:
    """Validate a definition and store it as the next version of its name."""
    compile_plan(spec)  # raises WorkflowInvalid naming the path of each problem
    version = await repository.latest_version(session, spec.name) + 1
    workflow = Workflow(
        id=new_id(),
        name=spec.name,
        version=version,
        description=spec.description,
        definition=spec.model_dump(mode="json", exclude_none=True),
        created_by=principal.user_id,
        created_at=now,
    )
    repository.add(session, workflow)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"Another version of {spec.name!r} was created at the same moment; retry",
            code="workflow_version_race",
        ) from exc
    record_event(
        session,
        type="workflow.created",
        resource_type="workflow",
        resource_id=workflow.id,
        data={"name": workflow.name, "version": workflow.version},
        actor=principal.id,
    )
    return workflow


def validate(spec: WorkflowCreate) -> None:
    """Check a definition without storing it (raises WorkflowInvalid)."""
    compile_plan(spec)


async def get_workflow(session: AsyncSession, *, workflow_id: str) -> Workflow:
    workflow = await repository.get_workflow(session, workflow_id)
    if workflow is None:
        raise WorkflowNotFound(f"Workflow {workflow_id} not found")
    return workflow


async def resolve_workflow(session: AsyncSession, *, ref: str) -> Workflow:
    """A workflow id (that version) or a name (its latest version)."""
    workflow = await repository.get_workflow(session, ref)
    if workflow is None:
        workflow = await repository.latest_by_name(session, ref)
    if workflow is None:
        raise WorkflowNotFound(f"No workflow with id or name {ref!r}")
    return workflow


async def list_workflows(
    session: AsyncSession, *, name: str | None, cursor: str | None, limit: int
) -> Slice[Workflow]:
    rows = await repository.list_workflows(
        session, name=name, after=_after(cursor), limit=limit + 1
    )
    return _slice(list(rows), limit)


def plan_of(workflow: Workflow) -> Plan:
    plan = _PLANS.get(workflow.id)
    if plan is None:
        plan = compile_definition(workflow.definition)
        if len(_PLANS) >= _PLAN_CACHE_SIZE:
            _PLANS.clear()
        _PLANS[workflow.id] = plan
    return plan


# --- runs --------------------------------------------------------------------------------


def _can_see(principal: Principal, run: WorkflowRun) -> bool:
    return principal.can(Permission.TASKS_OPERATE) or run.created_by == principal.user_id


def _runner(run: WorkflowRun) -> Principal:
    """Who the steps' tasks are submitted (and cancelled) as: the run's creator."""
    return Principal(
        kind="user",
        user_id=run.created_by,
        role="workflow",
        permissions=frozenset({Permission.TASKS_WRITE}),
    )


async def start_run(
    session: AsyncSession,
    *,
    principal: Principal,
    workflow_ref: str,
    run_input: dict[str, Any],
    now: datetime,
    default_retry: RetryPolicy,
) -> tuple[WorkflowRun, list[WorkflowStep]]:
    """Create a run and submit its first steps' tasks (in the caller's transaction)."""
    if len(json.dumps(run_input, default=str)) > MAX_RUN_INPUT_BYTES:
        raise Unprocessable(
            f"Run input over {MAX_RUN_INPUT_BYTES} bytes; attach a file instead",
            code="input_too_large",
        )
    workflow = await resolve_workflow(session, ref=workflow_ref)
    plan = plan_of(workflow)
    run = WorkflowRun(
        id=new_id(),
        workflow_id=workflow.id,
        workflow_name=workflow.name,
        workflow_version=workflow.version,
        status=R.RUNNING.value,
        input=run_input,
        output=None,
        error=None,
        settings={"retry": default_retry.model_dump()},
        retries=0,
        created_by=principal.user_id,
        created_at=now,
        updated_at=now,
    )
    repository.add(session, run)
    rows: list[WorkflowStep] = []
    for position, spec in enumerate(plan.rows()):
        row = WorkflowStep(
            id=new_id(),
            run_id=run.id,
            key=spec.key,
            kind=spec.kind,
            parent_key=spec.parent_key,
            position=position,
            status=S.PENDING.value,
            input=None,
            output=None,
            error=None,
            detail={},
            task_id=None,
            agent_id=None,
            tasks=[],
            updated_at=now,
        )
        repository.add(session, row)
        rows.append(row)
    await session.flush()
    _run_event(session, run, None, principal.id, workflow=workflow.name, version=workflow.version)
    engine = await _engine(session, plan, run, rows)
    engine.advance()
    await _carry_out(session, run, plan, engine, rows, now=now, actor=principal.id)
    return run, rows


async def get_run(
    session: AsyncSession, *, principal: Principal, run_id: str
) -> tuple[WorkflowRun, list[WorkflowStep]]:
    run = await repository.get_run(session, run_id)
    if run is None or not _can_see(principal, run):
        raise RunNotFound(f"Workflow run {run_id} not found")
    return run, list(await repository.run_steps(session, run.id))


async def visible_run(session: AsyncSession, *, principal: Principal, run_id: str) -> WorkflowRun:
    run = await repository.get_run(session, run_id)
    if run is None or not _can_see(principal, run):
        raise RunNotFound(f"Workflow run {run_id} not found")
    return run


async def list_runs(
    session: AsyncSession,
    *,
    principal: Principal,
    statuses: Sequence[str],
    workflow: str | None,
    cursor: str | None,
    limit: int,
) -> Slice[WorkflowRun]:
    mine = None if principal.can(Permission.TASKS_OPERATE) else principal.user_id
    rows = await repository.list_runs(
        session,
        created_by=mine,
        statuses=statuses,
        workflow=workflow,
        after=_after(cursor),
        limit=limit + 1,
    )
    return _slice(list(rows), limit)


async def cancel_run(
    session: AsyncSession, *, principal: Principal, run_id: str, now: datetime, reason: str | None
) -> tuple[WorkflowRun, list[WorkflowStep]]:
    """Cancel a RUNNING run: its running tasks are cancelled, its steps not yet
    final become CANCELLED."""
    run = await visible_run(session, principal=principal, run_id=run_id)
    if run.status != R.RUNNING:
        raise RunFinished(f"Workflow run is {run.status}; only a RUNNING run can be cancelled")
    why = reason or "workflow run cancelled"
    # The tasks first, then the run: the order in which a task's end locks them.
    busy = [r for r in await repository.run_steps(session, run.id) if _holds_task(r)]
    await _cancel_tasks(session, run, sorted(r.task_id for r in busy if r.task_id), why, now)
    run = await _locked_run(session, run.id)
    if run.status != R.RUNNING:
        raise RunFinished(f"Workflow run is {run.status}; only a RUNNING run can be cancelled")
    rows = list(await repository.run_steps(session, run.id))
    plan = plan_of(await get_workflow(session, workflow_id=run.workflow_id))
    engine = Engine(plan, {r.key: r for r in rows}, run_id=run.id, run_input=run.input)
    engine.cancel_run(why)
    engine.out.run = (R.CANCELLED, None, {"message": why, "type": "cancelled"})
    await _carry_out(session, run, plan, engine, rows, now=now, actor=principal.id)
    return run, rows


async def retry_run(
    session: AsyncSession, *, principal: Principal, run_id: str, now: datetime
) -> tuple[WorkflowRun, list[WorkflowStep]]:
    """Run a FAILED run again from its failed steps (what succeeded is kept)."""
    await visible_run(session, principal=principal, run_id=run_id)
    run = await _locked_run(session, run_id)
    if run.status != R.FAILED:
        raise RunNotRetryable(
            f"Workflow run is {run.status}; only a FAILED run can be retried",
            current=run.status,
        )
    rows = list(await repository.run_steps(session, run.id))
    plan = plan_of(await get_workflow(session, workflow_id=run.workflow_id))
    by_key = {r.key: r for r in rows}
    transitions = reset_for_retry(plan, dict(by_key))
    previous = run.status
    check_run_transition(R(run.status), R.RUNNING)
    run.status = R.RUNNING.value
    run.error = None
    run.output = None
    run.finished_at = None
    run.retries += 1
    run.updated_at = now
    _run_event(session, run, previous, principal.id, retry=run.retries)
    _step_events(session, run, by_key, transitions, now, principal.id)
    engine = await _engine(session, plan, run, rows)
    engine.advance()
    await _carry_out(session, run, plan, engine, rows, now=now, actor=principal.id)
    return run, rows


# --- advancing ---------------------------------------------------------------------------


@hooks.on_task_finished
async def on_task_finished(session: AsyncSession, finished: hooks.TaskFinished) -> None:
    """The task engine's listener: a step's task ended (in that transaction)."""
    if finished.workflow_step_id is None:
        return  # not a workflow's task: most are not
    if finished.id in session.info.get(cancels.CANCELLING, ()):
        return  # cancelled by a workflow itself, which already settled its step
    run_id = await repository.step_run_id(session, finished.workflow_step_id)
    if run_id is None:
        return
    run = await _locked_run(session, run_id)
    if run.status != R.RUNNING:
        return
    rows = list(await repository.run_steps(session, run.id))
    row = next((r for r in rows if r.id == finished.workflow_step_id), None)
    if row is None:
        return
    plan = plan_of(await get_workflow(session, workflow_id=run.workflow_id))
    engine = await _engine(session, plan, run, rows)
    ended = engine.task_ended(
        row.key,
        task_id=finished.id,
        status=finished.status,
        result=finished.result,
        error=finished.error,
        agent_id=finished.agent_id,
    )
    if not ended:
        return  # a task of an earlier try, or one that does not belong to the step
    engine.advance()
    await _carry_out(session, run, plan, engine, rows, now=finished.at, actor="workflow")


async def _locked_run(session: AsyncSession, run_id: str) -> WorkflowRun:
    run = await repository.get_run(session, run_id, for_update=True)
    if run is None:
        raise RunNotFound(f"Workflow run {run_id} not found")
    return run


async def _engine(
    session: AsyncSession, plan: Plan, run: WorkflowRun, rows: list[WorkflowStep]
) -> Engine:
    by_key = {r.key: r for r in rows}
    counts: dict[str, int] = {}
    for node in plan.nodes.values():
        # Only for a CONSENSUS about to ask its votes: how many agents could answer.
        if node.strategy == Strategy.CONSENSUS and by_key[node.id].status in (S.PENDING, S.RUNNING):
            votes = [r for r in rows if r.parent_key == node.id and r.kind == "vote"]
            if node.task is not None and all(v.status == S.PENDING for v in votes):
                counts[node.id] = await agents_service.count_matching(
                    session,
                    agent_type=node.task.agent_type,
                    capabilities=list(node.task.capabilities),
                )
    return Engine(
        plan,
        dict(by_key),
        run_id=run.id,
        run_input=run.input,
        run_status=run.status,
        agent_counts=counts,
    )


async def _carry_out(
    session: AsyncSession,
    run: WorkflowRun,
    plan: Plan,
    engine: Engine,
    rows: list[WorkflowStep],
    *,
    now: datetime,
    actor: str,
) -> None:
    """Do what the engine decided: submit tasks, cancel tasks, record the
    transitions and events, end the run. Submitting can fail a step (its input
    too large, say), which may decide more: repeat until nothing is left."""
    by_key = {r.key: r for r in rows}
    while True:
        starts, engine.out.starts = engine.out.starts, []
        failed = await _submit(session, run, by_key, starts, now)
        if not failed:
            break
        for key, problem in failed:
            engine.fail_row(key, problem)
        engine.advance()
    out = engine.out
    _step_events(session, run, by_key, out.transitions, now, actor)
    for key, agent_id in out.discarded:
        record_event(
            session,
            type="workflow_step.vote_discarded",
            resource_type="workflow_run",
            resource_id=run.id,
            data={"step": key, "agent_id": agent_id, "reason": "the agent had already voted"},
            actor=actor,
        )
    if out.cancels:
        done = session.info.get(cancels.CANCELLING, set())
        task_ids = sorted(t for k in out.cancels if (t := by_key[k].task_id) and t not in done)
        await _cancel_tasks(session, run, task_ids, "no longer needed by its workflow run", now)
    if out.run is not None and run.status == R.RUNNING:
        status, output, error = out.run
        previous = run.status
        check_run_transition(R(run.status), status)
        run.status = status.value
        run.output = output
        run.error = error
        run.finished_at = now
        run.updated_at = now
        _run_event(session, run, previous, actor, error=(error or {}).get("message"))
    else:
        run.updated_at = now


def _holds_task(row: WorkflowStep) -> bool:
    return (
        row.status == S.RUNNING
        and row.kind != "group"
        and row.task_id is not None
        and not (row.detail or {}).get("primary_failed")
    )


async def _submit(
    session: AsyncSession,
    run: WorkflowRun,
    by_key: dict[str, WorkflowStep],
    starts: list[Start],
    now: datetime,
) -> list[tuple[str, dict[str, Any]]]:
    """Submit the started rows' tasks in one go; returns the rows that could not start."""
    if not starts:
        return []
    failed: list[tuple[str, dict[str, Any]]] = []
    specs: list[TaskCreate] = []
    keys: list[str] = []
    for start in starts:
        row = by_key[start.key]
        excluded = set(start.excluded_agents)
        if excluded and start.consensus is not None:
            excluded |= await _agents_on_votes(session, by_key, start.consensus, row)
        if len(json.dumps(start.input, default=str)) > tasks_service.MAX_INPUT_BYTES:
            failed.append((start.key, {"message": "task input too large", "type": "input"}))
            continue
        spec = start.spec
        try:
            specs.append(
                TaskCreate(
                    type=spec.task_type,
                    input=start.input,
                    required_capabilities=list(spec.capabilities),
                    priority=spec.priority,
                    timeout=spec.timeout,
                    retry=RetryPolicy(**spec.retry) if spec.retry is not None else None,
                    preferred_agents=[spec.agent_name] if spec.agent_name else [],
                    excluded_agents=sorted(excluded),
                    workflow_step_id=row.id,
                    agent_type=AgentType(spec.agent_type) if spec.agent_type else None,
                )
            )
        except ValidationError as exc:
            failed.append((start.key, {"message": str(exc)[:500], "type": "input"}))
            continue
        keys.append(start.key)
    if specs:
        records, _ = await tasks_service.submit(
            session,
            principal=_runner(run),
            specs=specs,
            now=now,
            default_retry=RetryPolicy(**run.settings.get("retry", {})),
        )
        created: list[Any] = list(records)
        for key, record in zip(keys, created, strict=True):
            row = by_key[key]
            task_id = str(record["id"] if isinstance(record, dict) else record.id)
            row.task_id = task_id
            row.tasks = [*row.tasks, task_id]
    return failed


async def _agents_on_votes(
    session: AsyncSession, by_key: dict[str, WorkflowStep], consensus: str, row: WorkflowStep
) -> set[str]:
    """Agents holding the other votes' tasks now (a vote asked again avoids them)."""
    others = [
        r.task_id
        for r in by_key.values()
        if r.parent_key == consensus and r.kind == "vote" and r is not row and _holds_task(r)
    ]
    agents: set[str] = set()
    for task_id in others:
        if task_id is None:
            continue
        task = await tasks_service.get_task(
            session,
            principal=Principal(
                kind="user",
                user_id="",
                role="workflow",
                permissions=frozenset({Permission.TASKS_OPERATE}),
            ),
            task_id=task_id,
        )
        if task.agent_id:
            agents.add(task.agent_id)
    return agents


async def _cancel_tasks(
    session: AsyncSession, run: WorkflowRun, task_ids: list[str], reason: str, now: datetime
) -> None:
    """Cancel these tasks (those already final are left alone) and have their
    agents told once the transaction commits."""
    if not task_ids:
        return
    guard: set[str] = session.info.setdefault(cancels.CANCELLING, set())
    guard.update(task_ids)
    runner = _runner(run)
    for task_id in sorted(task_ids):
        try:
            task, held = await tasks_service.cancel(
                session, principal=runner, task_id=task_id, now=now, reason=reason
            )
        except (IllegalTaskTransition, tasks_service.TaskNotFound):
            continue
        if held is not None and task.agent_id:
            cancels.remember(session, held, task.agent_id, reason)
    # Written now: a report on one of these tasks later in the same batch of the
    # task writer reads the row afresh and is refused as stale.
    await session.flush()


def _step_events(
    session: AsyncSession,
    run: WorkflowRun,
    by_key: dict[str, WorkflowStep],
    transitions: list[tuple[str, str, str]],
    now: datetime,
    actor: str,
) -> None:
    for key, previous, target in transitions:
        row = by_key[key]
        row.updated_at = now
        if target == S.RUNNING:
            row.started_at = now
            row.finished_at = None
        elif target == S.PENDING:
            row.started_at = None
            row.finished_at = None
        else:
            row.finished_at = now
        data: dict[str, Any] = {"step": key, "kind": row.kind, "from": previous, "to": target}
        if row.task_id and target != S.PENDING:
            data["task_id"] = row.task_id
        if row.agent_id:
            data["agent_id"] = row.agent_id
        if target == S.FAILED and row.error:
            data["error"] = row.error.get("message")
        record_event(
            session,
            type=f"workflow_step.{target.lower()}",
            resource_type="workflow_run",
            resource_id=run.id,
            data=data,
            actor=actor,
        )


def _run_event(
    session: AsyncSession, run: WorkflowRun, previous: str | None, actor: str, **extra: Any
) -> None:
    data: dict[str, Any] = {"from": previous, "to": run.status, "workflow": run.workflow_name}
    data.update({k: v for k, v in extra.items() if v is not None})
    record_event(
        session,
        type=f"workflow_run.{run.status.lower()}",
        resource_type="workflow_run",
        resource_id=run.id,
        data=data,
        actor=actor,
    )


def is_final(run: WorkflowRun) -> bool:
    return R(run.status) in RUN_FINAL


# --- paging --------------------------------------------------------------------------------


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    raw = decode_cursor(cursor)
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(str(raw["at"])), str(raw["id"])
    except (KeyError, ValueError) as exc:
        raise Unprocessable("invalid cursor", code="invalid_cursor") from exc


def _slice(rows: list[Any], limit: int) -> Slice[Any]:
    items = rows[:limit]
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = encode_cursor({"at": last.created_at.isoformat(), "id": last.id})
    return Slice(items=items, next_cursor=nxt)

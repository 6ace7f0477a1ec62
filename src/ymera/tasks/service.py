"""Task rules: submit (with idempotency), cancel, retry, feedback; and the
engine's side: claim, accept, renew, complete, fail, release, re-queue.

Every report from an agent is *fenced* by (task id, attempt, lease token): it
changes the task only when all three are current, so a late report from a
superseded attempt can never overwrite a newer one.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import metrics as agent_metrics
from ymera.agents import repository as agents_repository
from ymera.agents import service as agents_service
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.code import service as code_service
from ymera.errors import Conflict, Forbidden, NotFound, Unprocessable
from ymera.events.outbox import record_event
from ymera.files import service as files_service
from ymera.kit import jsonx
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.tasks import Task, TaskRouting
from ymera.tasks import hooks, repository
from ymera.tasks.repository import TaskRow
from ymera.tasks.routing import AgentSlot, Round, Router, TaskView, rejection
from ymera.tasks.schemas import RetryPolicy, TaskCreate
from ymera.tasks.status import (
    CANCELLABLE,
    RETRYABLE_BY_HAND,
    TERMINAL,
    IllegalTaskTransition,
    TaskStatus,
    check_transition,
)

T = TaskStatus
log = structlog.get_logger("ymera.tasks")

MAX_INPUT_BYTES = 1024 * 1024


class TaskNotFound(NotFound):
    code = "task_not_found"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"


class UnknownWorkspace(Unprocessable):
    code = "unknown_workspace"


class UnknownPinnedAgent(Unprocessable):
    code = "unknown_agent"


class InvalidRoutingHints(Unprocessable):
    code = "invalid_routing_hints"


class WorkspaceNotReadable(Forbidden):
    code = "missing_permission"


class StaleLease(Conflict):
    """A report from an attempt that is no longer current; harmless, refused."""

    code = "stale_lease"


@dataclass(frozen=True)
class LeaseRef:
    task_id: str
    attempt: int
    lease_token: str


@dataclass(frozen=True)
class ClaimedTask:
    """What delivering an assignment needs of its task."""

    id: str
    type: str
    priority: int
    input: dict[str, Any]
    file_ids: list[str]
    deadline: datetime | None
    timeout_seconds: float | None
    attempt: int
    lease_token: str
    workflow_step_id: str | None = None
    workspace_id: str | None = None
    workspace_mode: str | None = None


@dataclass(frozen=True)
class HeldWorkspaceTask:
    """A task an agent holds that carries a workspace."""

    id: str
    type: str
    workspace_mode: str


@dataclass(frozen=True)
class Assignment:
    task: ClaimedTask
    agent_id: str
    lease_expires_at: datetime


# --- helpers ---------------------------------------------------------------------------


def _event(
    session: AsyncSession, task: Task | TaskRow, previous: str | None, actor: str | None
) -> None:
    data: dict[str, Any] = {
        "from": previous,
        "to": task.status,
        "type": task.type,
        "attempt": task.attempt,
        "agent_id": task.agent_id,
    }
    if task.workflow_step_id:
        data["workflow_step_id"] = task.workflow_step_id
    if task.status in (T.FAILED, T.DEAD) and task.error:
        data["error"] = task.error.get("message")
    record_event(
        session,
        type=f"task.{task.status.lower()}",
        resource_type="task",
        resource_id=task.id,
        data=data,
        actor=actor,
    )


async def _finished(session: AsyncSession, task: Task | TaskRow, now: datetime) -> None:
    """Tell the listeners (workflows, chat) that a task ended, in this transaction."""
    if hooks.has_listeners():
        await hooks.notify_finished(
            session,
            hooks.TaskFinished(
                id=task.id,
                type=task.type,
                status=task.status,
                attempt=task.attempt,
                agent_id=task.agent_id,
                workflow_step_id=task.workflow_step_id,
                result=task.result,
                error=task.error,
                at=now,
            ),
        )


def _move(task: Task | TaskRow, target: TaskStatus, now: datetime) -> str:
    previous = task.status
    check_transition(T(previous), target)
    task.status = target.value
    task.updated_at = now
    return previous


def backoff_seconds(task: Task | TaskRow, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal" jitter (a random wait between half and all of
    the capped delay) for the attempt that just failed."""
    exp = task.retry_initial * task.retry_factor ** max(0, task.attempt - 1)
    ceiling = min(task.retry_cap, exp)
    return (rng or random).uniform(ceiling / 2, ceiling)


def request_hash(body: Any) -> str:
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _can_see(principal: Principal, task: Task) -> bool:
    if principal.can(Permission.TASKS_OPERATE) or task.created_by == principal.user_id:
        return True
    return principal.kind == "agent" and task.agent_id == principal.agent_id


async def _record_outcome(
    session: AsyncSession,
    task: Task | TaskRow,
    *,
    agent_id: str | None,
    success: bool,
    now: datetime,
) -> None:
    """Feed the agent's metrics (and so routing) with one attempt's outcome."""
    if agent_id is None:
        return
    began = task.started_at or task.assigned_at or now
    latency = max(0.0, (now - began).total_seconds())
    await agent_metrics.record_outcome(
        session,
        agent_id=agent_id,
        task_type=task.type,
        success=success,
        latency_seconds=latency,
        now=now,
    )
    await hooks.notify_outcome(
        session,
        hooks.Outcome(agent_id, task.type, now, success=success, latency=latency),
    )


# --- submission ------------------------------------------------------------------------


# The columns a new task leaves empty, in every inserted row (so the rows
# describe the whole task, and a multi-row INSERT has one shape).
_UNSET_AT_SUBMIT: dict[str, Any] = dict.fromkeys(
    (
        "agent_id",
        "lease_token",
        "lease_expires_at",
        "progress",
        "progress_message",
        "feedback_score",
        "feedback_comment",
        "assigned_at",
        "started_at",
        "finished_at",
    )
)


@dataclass(frozen=True)
class NewTasks:
    """Tasks to submit, built (``new_tasks``) before the unit of work that writes
    them: ``rows`` are inserted (changed in place if assigned as they are
    inserted), ``records`` are what the submitter is answered (as submitted)."""

    rows: list[dict[str, Any]]
    records: list[dict[str, Any]]


def new_tasks(
    *,
    principal: Principal,
    specs: Sequence[TaskCreate],
    now: datetime,
    default_retry: RetryPolicy,
    idempotency_key: str | None = None,
    idempotency_ttl: float = 86_400,
    body_hash: str | None = None,
) -> NewTasks:
    """The rows of new tasks (no database: the group-commit writer's callers build
    them before queueing, off its serial path). Raises ``Unprocessable`` for an
    input over the size limit."""
    rows: list[dict[str, Any]] = []
    expires = now + timedelta(seconds=idempotency_ttl) if idempotency_key else None
    for spec in specs:
        if spec.input and len(jsonx.dumpb(spec.input)) > MAX_INPUT_BYTES:
            raise Unprocessable(
                f"Task input over {MAX_INPUT_BYTES} bytes; attach a file instead",
                code="input_too_large",
            )
        policy = spec.retry or default_retry
        rows.append(
            {
                "id": new_id(),
                "type": spec.type,
                "status": T.PENDING.value,
                "priority": spec.priority,
                "input": spec.input,
                "required_capabilities": list(spec.required_capabilities),
                "file_ids": list(spec.file_ids),
                "preferred_agents": list(spec.preferred_agents),
                "excluded_agents": list(spec.excluded_agents),
                "preferred_only": spec.preferred_only,
                "max_attempts": policy.max_attempts,
                "attempt": 0,
                "retry_initial": policy.initial,
                "retry_factor": policy.factor,
                "retry_cap": policy.cap,
                "timeout_seconds": spec.timeout,
                "deadline": spec.deadline,
                "available_at": now,
                "idempotency_key": idempotency_key,
                "request_hash": body_hash if idempotency_key else None,
                "idempotency_expires_at": expires,
                "created_by": principal.user_id,
                "workflow_step_id": spec.workflow_step_id,
                "agent_type": spec.agent_type,
                "workspace_id": spec.workspace_id,
                "workspace_mode": spec.workspace_mode if spec.workspace_id is not None else None,
                "created_at": now,
                "updated_at": now,
                **_UNSET_AT_SUBMIT,
            }
        )
    if idempotency_key and len(rows) > 1:
        # One key covers a whole batch: it is stored on the first task only (the
        # unique index is per key), the others are found through the same request.
        for row in rows[1:]:
            row["idempotency_key"] = f"{idempotency_key}#{row['id']}"
    records = [{**row, "result": None, "error": None} for row in rows]  # no JSON null in rows
    return NewTasks(rows, records)


async def submit(
    session: AsyncSession,
    *,
    principal: Principal,
    specs: Sequence[TaskCreate],
    now: datetime,
    default_retry: RetryPolicy,
    idempotency_key: str | None = None,
    idempotency_ttl: float = 86_400,
    body_hash: str | None = None,
    defer: bool = False,
    built: NewTasks | None = None,
) -> tuple[list[Task] | list[dict[str, Any]], bool]:
    """Create tasks. Returns (tasks, created); with an idempotency key already used
    by this principal with the same body, returns the original tasks and False.

    ``defer``: insert the rows when the unit of work commits, in one statement
    with every other deferred submission (the group-commit writer's way; not
    with an idempotency key, whose uniqueness must be checked here).
    ``built``: the tasks' rows, built beforehand by ``new_tasks`` from the same
    arguments (else built here).
    """
    if idempotency_key:
        existing = await repository.find_idempotent(
            session, created_by=principal.user_id, key=idempotency_key
        )
        live = [t for t in existing if t.idempotency_expires_at and t.idempotency_expires_at > now]
        if live:
            if any(t.request_hash != body_hash for t in live):
                raise IdempotencyConflict(
                    "Idempotency-Key was already used with a different request body",
                    task_ids=[t.id for t in live][:10],
                )
            return list(live), False
        if existing:  # expired: free the key for this request
            await repository.clear_idempotency(session, [t.id for t in existing])
    await _check_workspaces(session, principal, specs)
    await _check_files(session, principal, specs, now)
    await _check_pinned(session, specs)
    if built is None:
        built = new_tasks(
            principal=principal,
            specs=specs,
            now=now,
            default_retry=default_retry,
            idempotency_key=idempotency_key,
            idempotency_ttl=idempotency_ttl,
            body_hash=body_hash,
        )
    rows = built.rows
    if defer and not idempotency_key:
        repository.defer_insert(session, rows)
    else:
        try:
            await repository.insert_tasks(session, rows)
        except IntegrityError as exc:
            raise IdempotencyConflict(
                "Idempotency-Key is being used by a concurrent request"
            ) from exc
    for row in rows:
        if row["file_ids"]:
            await files_service.attach(
                session,
                file_ids=row["file_ids"],
                resource_type="task",
                resource_id=row["id"],
                now=now,
            )
        record_event(
            session,
            type="task.pending",
            resource_type="task",
            resource_id=row["id"],
            data={"from": None, "to": "PENDING", "type": row["type"], "attempt": 0},
            actor=principal.id,
        )
    # The rows are what was inserted: no need to read them back.
    return built.records, True


async def _check_files(
    session: AsyncSession, principal: Principal, specs: Sequence[TaskCreate], now: datetime
) -> None:
    """Every file the specs attach exists and the submitter may read it (422
    `unknown_file`); only when some spec attaches files."""
    wanted = [f for spec in specs for f in spec.file_ids]
    if wanted:
        await files_service.check_references(session, principal=principal, file_ids=wanted, now=now)


async def _check_pinned(session: AsyncSession, specs: Sequence[TaskCreate]) -> None:
    """A task only its preferred agents may take names at least one registered
    agent (422 `unknown_agent`: it would wait forever); one query, only when some
    spec is pinned."""
    pinned = [spec for spec in specs if spec.preferred_only]
    if not pinned:
        return
    if not all(spec.preferred_agents for spec in pinned):
        raise InvalidRoutingHints("preferred_only needs at least one agent in preferred_agents")
    known = await agents_repository.known_keys(
        session, [key for spec in pinned for key in spec.preferred_agents]
    )
    for spec in pinned:
        if not known.intersection(spec.preferred_agents):
            raise UnknownPinnedAgent(
                "preferred_only: none of the preferred agents "
                f"{', '.join(repr(k) for k in spec.preferred_agents[:5])} is registered",
                agents=spec.preferred_agents[:10],
            )


async def _check_workspaces(
    session: AsyncSession, principal: Principal, specs: Sequence[TaskCreate]
) -> None:
    """Every workspace the specs carry exists and the submitter may read it (one
    query per submission, only when some spec carries one). Raised before anything
    is written, so a group commit refuses this submission alone."""
    wanted = {spec.workspace_id for spec in specs if spec.workspace_id is not None}
    if not wanted:
        return
    if not principal.can(Permission.WORKSPACES_READ):
        raise WorkspaceNotReadable(
            "A task with a workspace_id needs the workspaces:read permission",
            permission=Permission.WORKSPACES_READ.value,
        )
    missing = sorted(wanted - await code_service.existing_workspace_ids(session, ids=wanted))
    if missing:
        raise UnknownWorkspace(
            f"workspace_id {missing[0]!r} names no workspace; create one first "
            "(POST /api/v1/workspaces)",
            workspace_ids=missing[:10],
        )


async def get_task(session: AsyncSession, *, principal: Principal, task_id: str) -> Task:
    task = await repository.get(session, task_id)
    if task is None or not _can_see(principal, task):
        raise TaskNotFound(f"Task {task_id} not found")
    return task


async def routing_of(
    session: AsyncSession, *, principal: Principal, task_id: str
) -> tuple[Task, TaskRouting | None]:
    """A task the principal may see, with the explanation of its latest assignment."""
    task = await get_task(session, principal=principal, task_id=task_id)
    return task, await repository.latest_routing(session, task_id)


async def list_tasks(
    session: AsyncSession,
    *,
    principal: Principal,
    statuses: list[str],
    types: list[str],
    agent_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    cursor: str | None,
    limit: int,
) -> Slice[Task]:
    raw = decode_cursor(cursor)
    after = None
    if raw is not None:
        try:
            after = (datetime.fromisoformat(str(raw["at"])), str(raw["id"]))
        except (KeyError, ValueError) as exc:
            raise Unprocessable("invalid cursor", code="invalid_cursor") from exc
    rows = await repository.list_tasks(
        session,
        statuses=statuses,
        types=types,
        agent_id=agent_id,
        created_after=created_after,
        created_before=created_before,
        after=after,
        limit=limit + 1,
    )
    visible = [t for t in rows if _can_see(principal, t)]
    items = visible[:limit]
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = encode_cursor({"at": last.created_at.isoformat(), "id": last.id})
    return Slice(items=items, next_cursor=nxt)


async def _visible_for_update(session: AsyncSession, principal: Principal, task_id: str) -> Task:
    task = await repository.get(session, task_id, for_update=True)
    if task is None or not _can_see(principal, task):
        raise TaskNotFound(f"Task {task_id} not found")
    return task


async def cancel(
    session: AsyncSession, *, principal: Principal, task_id: str, now: datetime, reason: str | None
) -> tuple[Task, LeaseRef | None]:
    """Cancel; returns the task and, when an agent holds it, the lease to cancel."""
    task = await _visible_for_update(session, principal, task_id)
    if T(task.status) not in CANCELLABLE:
        raise IllegalTaskTransition(
            f"Task is {task.status}; only PENDING, ASSIGNED or RUNNING tasks can be cancelled",
            current=task.status,
            requested="CANCELLED",
            allowed=[],
        )
    held = None
    if task.agent_id and task.lease_token and task.status in (T.ASSIGNED, T.RUNNING):
        held = LeaseRef(task.id, task.attempt, task.lease_token)
        await agents_service.release_capacity(session, agent_id=task.agent_id, count=1)
    previous = _move(task, T.CANCELLED, now)
    task.finished_at = now
    task.error = {"message": reason or "cancelled", "type": "cancelled"}
    task.lease_token = None
    task.lease_expires_at = None
    _event(session, task, previous, principal.id)
    await _finished(session, task, now)
    return task, held


async def retry(
    session: AsyncSession, *, principal: Principal, task_id: str, now: datetime
) -> Task:
    task = await _visible_for_update(session, principal, task_id)
    if T(task.status) not in RETRYABLE_BY_HAND:
        raise IllegalTaskTransition(
            f"Task is {task.status}; only FAILED or DEAD tasks can be retried",
            current=task.status,
            requested="PENDING",
            allowed=[],
        )
    failed_by_deadline = (task.error or {}).get("type") == "deadline"
    previous = _move(task, T.PENDING, now)
    # A re-driven task gets as many attempts again as it was allowed.
    task.max_attempts = task.attempt + max(1, task.max_attempts)
    task.available_at = now
    task.agent_id = None
    task.finished_at = None
    task.error = None
    task.progress = None
    task.progress_message = None
    if task.deadline is not None and (failed_by_deadline or task.deadline <= now):
        task.deadline = None  # re-driven by hand: the deadline would fail it again at once
    _event(session, task, previous, principal.id)
    return task


async def feedback(
    session: AsyncSession,
    *,
    principal: Principal,
    task_id: str,
    score: float,
    comment: str | None,
    now: datetime,
) -> Task:
    task = await get_task(session, principal=principal, task_id=task_id)
    if task.status not in (T.SUCCEEDED, T.FAILED, T.DEAD):
        raise Conflict("Feedback is for finished tasks", code="task_not_finished")
    task.feedback_score = score
    task.feedback_comment = comment
    task.updated_at = now
    if task.agent_id:
        await agent_metrics.record_feedback(
            session, agent_id=task.agent_id, score=score, now=now, task_type=task.type
        )
        await hooks.notify_outcome(
            session, hooks.Outcome(task.agent_id, task.type, now, feedback=score)
        )
    record_event(
        session,
        type="task.feedback",
        resource_type="task",
        resource_id=task.id,
        data={"score": score, "agent_id": task.agent_id, "type": task.type},
        actor=principal.id,
    )
    return task


# --- engine ----------------------------------------------------------------------------


async def has_pending(session: AsyncSession, *, now: datetime) -> bool:
    """Is any task waiting now? (Cheap, read-only: lets dispatchers skip the claim.)"""
    return await repository.has_pending(session, now=now)


CLAIM_PAGES = 8


async def _queue_head(
    session: AsyncSession, *, now: datetime, want: int, by_id: dict[str, AgentSlot]
) -> list[Any]:
    """The head of the queue (priority, then age): ``want`` rows, then pages of
    ``want * 4`` more until ``want`` of them could be taken by some free agent,
    so tasks nobody can run now never hide those behind them; at most
    ``CLAIM_PAGES`` pages."""
    rows: list[Any] = []
    takeable = 0
    offset = 0
    # Whether some free agent could take a task depends only on its type,
    # required capabilities, exclusions, pin and agent type (agents do not change
    # meanwhile): decided once per such shape, not once per row.
    shapes: dict[tuple[Any, ...], bool] = {}
    for page in range(CLAIM_PAGES):
        size = want if page == 0 else want * 4
        window = await repository.pending_window(session, now=now, limit=size, offset=offset)
        offset += size
        rows.extend(window)
        for row in window:
            shape = (
                row.type,
                tuple(row.required_capabilities),
                tuple(row.excluded_agents),
                tuple(row.preferred_agents) if row.preferred_only else None,
                row.agent_type,
            )
            could = shapes.get(shape)
            if could is None:
                could = shapes[shape] = _could_take(row, by_id)
            takeable += could
        if len(window) < size or takeable >= want:
            break
    return rows


def _could_take(row: Any, by_id: dict[str, AgentSlot]) -> bool:
    view = TaskView(
        id=row.id,
        type=row.type,
        required_capabilities=list(row.required_capabilities),
        preferred_agents=list(row.preferred_agents),
        excluded_agents=list(row.excluded_agents),
        preferred_only=bool(row.preferred_only),
        agent_type=row.agent_type,
    )
    return any(rejection(view, agent) is None for agent in by_id.values())


async def claim(
    session: AsyncSession,
    *,
    agents: list[AgentSlot],
    router: Router,
    now: datetime,
    lease_seconds: float,
    limit: int,
    exclusive: bool = False,
) -> list[Assignment]:
    """Assign queued tasks (priority, then age) to agents with free slots.

    Set-based: one locked read of the head of the queue (only the columns routing
    and delivery need) and one batched update for every assignment.
    ``exclusive``: only this caller assigns to these agents (workers connected to
    this replica), so their capacity is counted in memory and the agents' load
    moves once per batch; otherwise each assignment reserves a slot with a
    conditional update (agents several replicas share).
    """
    free = sum(a.free for a in agents)
    if free <= 0:
        return []
    want = min(limit, free)
    by_id = {a.agent_id: a for a in agents}
    assignments: list[Assignment] = []
    updates: list[dict[str, Any]] = []
    expires = now + timedelta(seconds=lease_seconds)
    check_transition(T.PENDING, T.ASSIGNED)
    head = await _queue_head(session, now=now, want=want, by_id=by_id)
    tokens = _lease_tokens(min(want, len(head)))
    round_ = router.round(agents)
    for row in head:
        if len(assignments) >= want:
            break
        picked = _pick(row, round_, now)
        if picked is None:
            continue
        agent_id, explanation = picked
        if not exclusive and not await agents_service.reserve_capacity(
            session, agent_id=agent_id, count=1
        ):
            round_.full(agent_id)
            continue
        round_.took(agent_id)
        task = _claimed(row, next(tokens))
        updates.append(
            {
                "id": task.id,
                "status": T.ASSIGNED.value,
                "attempt": task.attempt,
                "agent_id": agent_id,
                "lease_token": task.lease_token,
                "lease_expires_at": expires,
                "assigned_at": now,
                "updated_at": now,
                "routing": explanation,
            }
        )
        _record_assigned(session, task, agent_id)
        assignments.append(Assignment(task, agent_id, expires))
    await repository.assign_many(session, updates)
    if exclusive:
        _add_loads(session, assignments)
    return assignments


def assign_new(
    session: AsyncSession,
    *,
    rows: list[dict[str, Any]],
    agents: list[AgentSlot],
    router: Router,
    now: datetime,
    lease_seconds: float,
    limit: int,
) -> list[Assignment]:
    """Assign tasks being submitted in this unit of work, before they are written:
    for the group-commit writer when no older task waits (the new tasks are the
    queue), so each is inserted already ASSIGNED (its ``task.pending`` and
    ``task.assigned`` events both recorded) instead of inserted, read back and
    updated. ``rows`` are the deferred inserts (``repository.deferred_rows``);
    assigned ones are changed in place. Only for agents whose capacity the
    caller tracks (this replica's workers)."""
    free = sum(a.free for a in agents)
    if free <= 0 or not rows:
        return []
    want = min(limit, free)
    expires = now + timedelta(seconds=lease_seconds)
    check_transition(T.PENDING, T.ASSIGNED)
    assignments: list[Assignment] = []
    decisions: list[tuple[str, int, datetime, dict[str, Any]]] = []
    tokens = _lease_tokens(min(want, len(rows)))
    round_ = router.round(agents)
    # Claim order: priority (highest first), then submission order.
    for row in sorted(rows, key=lambda r: -int(r["priority"])):
        if len(assignments) >= want:
            break
        view = SimpleNamespace(**row)
        picked = _pick(view, round_, now)
        if picked is None:
            continue
        agent_id, explanation = picked
        round_.took(agent_id)
        task = _claimed(view, next(tokens))
        row.update(
            status=T.ASSIGNED.value,
            attempt=task.attempt,
            agent_id=agent_id,
            lease_token=task.lease_token,
            lease_expires_at=expires,
            assigned_at=now,
            updated_at=now,
        )
        decisions.append((task.id, task.attempt, now, explanation))
        _record_assigned(session, task, agent_id)
        assignments.append(Assignment(task, agent_id, expires))
    repository.defer_routing(session, decisions)
    _add_loads(session, assignments)
    return assignments


def _lease_tokens(count: int) -> Iterator[str]:
    """Lease tokens fence reports, so they must be unguessable: one read of the
    OS's randomness for a whole claim, 16 hex digits each."""
    pool = secrets.token_hex(8 * count)
    return (pool[i : i + 16] for i in range(0, len(pool), 16))


def _pick(row: Any, round_: Round, now: datetime) -> Any:
    """(agent id, explanation) for a queued task, or None when no free agent may
    take it now (or its deadline passed: the deadline sweeper fails it)."""
    if row.deadline is not None and row.deadline <= now:
        return None
    view = TaskView(
        id=row.id,
        type=row.type,
        required_capabilities=list(row.required_capabilities),
        preferred_agents=list(row.preferred_agents),
        excluded_agents=list(row.excluded_agents),
        preferred_only=bool(row.preferred_only),
        agent_type=row.agent_type,
    )
    decision = round_.choose(view)
    if decision.agent_id is None:
        return None
    return decision.agent_id, decision.explanation


def _claimed(row: Any, lease_token: str) -> ClaimedTask:
    return ClaimedTask(
        id=row.id,
        type=row.type,
        priority=row.priority,
        input=row.input,
        file_ids=list(row.file_ids),
        deadline=row.deadline,
        timeout_seconds=row.timeout_seconds,
        attempt=row.attempt + 1,
        lease_token=lease_token,
        workflow_step_id=row.workflow_step_id,
        workspace_id=row.workspace_id,
        workspace_mode=row.workspace_mode if row.workspace_id else None,
    )


def _record_assigned(session: AsyncSession, task: ClaimedTask, agent_id: str) -> None:
    data: dict[str, Any] = {
        "from": T.PENDING.value,
        "to": T.ASSIGNED.value,
        "type": task.type,
        "attempt": task.attempt,
        "agent_id": agent_id,
    }
    if task.workflow_step_id:
        data["workflow_step_id"] = task.workflow_step_id
    record_event(
        session,
        type="task.assigned",
        resource_type="task",
        resource_id=task.id,
        data=data,
        actor="dispatcher",
    )


def _add_loads(session: AsyncSession, assignments: list[Assignment]) -> None:
    counts: dict[str, int] = {}
    for a in assignments:
        counts[a.agent_id] = counts.get(a.agent_id, 0) + 1
    for agent_id, count in counts.items():
        agents_service.defer_load(session, agent_id=agent_id, count=count)


async def _fenced(session: AsyncSession, ref: LeaseRef) -> TaskRow:
    """The task's report row, locked, if (attempt, lease token) are current; the
    caller's changes to it are saved with the unit of work."""
    task = await repository.get_row(session, ref.task_id)
    if task is None:
        raise TaskNotFound(f"Task {ref.task_id} not found")
    if (
        task.attempt != ref.attempt
        or task.lease_token != ref.lease_token
        or task.status not in (T.ASSIGNED, T.RUNNING)
    ):
        log.info(
            "stale_report",
            task_id=ref.task_id,
            attempt=ref.attempt,
            current_attempt=task.attempt,
            status=task.status,
        )
        raise StaleLease(
            f"Attempt {ref.attempt} of task {ref.task_id} is no longer current",
            current_attempt=task.attempt,
            status=task.status,
        )
    return task


async def accept(
    session: AsyncSession, *, ref: LeaseRef, now: datetime, lease_seconds: float
) -> TaskRow:
    task = await _fenced(session, ref)
    if task.status == T.ASSIGNED:
        previous = _move(task, T.RUNNING, now)
        task.started_at = now
        _event(session, task, previous, task.agent_id)
    task.lease_expires_at = now + timedelta(seconds=lease_seconds)
    return task


async def renew(
    session: AsyncSession,
    *,
    agent_id: str,
    refs: Sequence[LeaseRef],
    now: datetime,
    lease_seconds: float,
) -> list[str]:
    """Extend the leases an agent still holds; returns the ids it no longer holds."""
    lost: list[str] = []
    tasks = {t.id: t for t in await repository.get_many(session, [r.task_id for r in refs])}
    for ref in refs:
        task = tasks.get(ref.task_id)
        if (
            task is None
            or task.agent_id != agent_id
            or task.attempt != ref.attempt
            or task.lease_token != ref.lease_token
            or task.status not in (T.ASSIGNED, T.RUNNING)
        ):
            lost.append(ref.task_id)
            continue
        task.lease_expires_at = now + timedelta(seconds=lease_seconds)
    return lost


async def progress(
    session: AsyncSession,
    *,
    ref: LeaseRef,
    pct: float | None,
    message: str | None,
    now: datetime,
    lease_seconds: float,
) -> TaskRow:
    task = await _fenced(session, ref)
    task.progress = pct
    task.progress_message = message[:500] if message else None
    task.lease_expires_at = now + timedelta(seconds=lease_seconds)
    task.updated_at = now
    return task


async def complete(
    session: AsyncSession, *, ref: LeaseRef, output: dict[str, Any], now: datetime
) -> TaskRow:
    task = await _fenced(session, ref)
    if task.status == T.ASSIGNED:  # result without a separate accept
        previous = _move(task, T.RUNNING, now)
        task.started_at = now
        _event(session, task, previous, task.agent_id)
    previous = _move(task, T.SUCCEEDED, now)
    task.result = output
    task.error = None
    task.finished_at = now
    task.lease_token = None
    task.lease_expires_at = None
    task.progress = 100.0
    await _record_outcome(session, task, agent_id=task.agent_id, success=True, now=now)
    if task.agent_id:
        await agents_service.release_capacity(session, agent_id=task.agent_id, count=1)
    _event(session, task, previous, task.agent_id)
    await _finished(session, task, now)
    return task


async def fail(
    session: AsyncSession,
    *,
    ref: LeaseRef,
    error: dict[str, Any],
    retryable: bool,
    now: datetime,
) -> TaskRow:
    task = await _fenced(session, ref)
    agent_id = task.agent_id
    await _requeue_or_finish(session, task, now=now, error=error, retryable=retryable)
    if agent_id:
        await agents_service.release_capacity(session, agent_id=agent_id, count=1)
    return task


async def release(session: AsyncSession, *, ref: LeaseRef, now: datetime, reason: str) -> TaskRow:
    """The agent hands the task back (draining): re-queued at once, attempt not held against it."""
    task = await _fenced(session, ref)
    agent_id = task.agent_id
    previous = _move(task, T.PENDING, now)
    task.max_attempts += 1  # a hand-back is not a failed attempt
    task.available_at = now
    task.lease_token = None
    task.lease_expires_at = None
    task.error = {"message": reason, "type": "released"}
    _event(session, task, previous, agent_id)
    if agent_id:
        await agents_service.release_capacity(session, agent_id=agent_id, count=1)
    return task


async def _requeue_or_finish(
    session: AsyncSession,
    task: Task | TaskRow,
    *,
    now: datetime,
    error: dict[str, Any],
    retryable: bool,
) -> None:
    await _record_outcome(session, task, agent_id=task.agent_id, success=False, now=now)
    task.error = error
    task.lease_token = None
    task.lease_expires_at = None
    if not retryable:
        previous = _move(task, T.FAILED, now)
        task.finished_at = now
    elif task.attempt >= task.max_attempts:
        previous = _move(task, T.DEAD, now)
        task.finished_at = now
    else:
        previous = _move(task, T.PENDING, now)
        task.available_at = now + timedelta(seconds=backoff_seconds(task))
    _event(session, task, previous, task.agent_id)
    if task.status != T.PENDING:
        await _finished(session, task, now)


async def requeue_expired(session: AsyncSession, *, now: datetime, limit: int = 500) -> list[Task]:
    """The reaper: a lease that ran out counts as a failed attempt."""
    tasks = list(await repository.expired_leases(session, now=now, limit=limit))
    for task in tasks:
        agent_id = task.agent_id
        await _requeue_or_finish(
            session,
            task,
            now=now,
            error={"message": "lease expired (agent silent or gone)", "type": "lease_expired"},
            retryable=True,
        )
        if agent_id:
            await agents_service.release_capacity(session, agent_id=agent_id, count=1)
    return tasks


async def requeue_agent(
    session: AsyncSession, *, agent_id: str, now: datetime, reason: str
) -> list[Task]:
    """Hand back every task an agent holds (it went OFFLINE, or was force-deleted)."""
    tasks = list(await repository.active_for_agent(session, agent_id))
    for task in tasks:
        await _requeue_or_finish(
            session, task, now=now, error={"message": reason, "type": "agent_lost"}, retryable=True
        )
    if tasks:
        await agents_service.release_capacity(session, agent_id=agent_id, count=len(tasks))
    return tasks


async def fail_past_deadline(
    session: AsyncSession, *, now: datetime, limit: int = 500
) -> list[Task]:
    tasks = list(await repository.past_deadline(session, now=now, limit=limit))
    for task in tasks:
        agent_id = task.agent_id if task.status in (T.ASSIGNED, T.RUNNING) else None
        task.error = {"message": "deadline passed before the task finished", "type": "deadline"}
        task.lease_token = None
        task.lease_expires_at = None
        previous = _move(task, T.FAILED, now)
        task.finished_at = now
        _event(session, task, previous, "system")
        await _finished(session, task, now)
        if agent_id:
            await agents_service.release_capacity(session, agent_id=agent_id, count=1)
    return tasks


# --- code tasks --------------------------------------------------------------------------


async def held_workspace_task(
    session: AsyncSession, *, agent_id: str, workspace_id: str, task_id: str | None
) -> HeldWorkspaceTask | None:
    """The task (``task_id``, or the one assigned last) that ``agent_id`` holds now
    (ASSIGNED or RUNNING) and that carries ``workspace_id``; None if there is none."""
    row = await repository.held_with_workspace(
        session, agent_id=agent_id, workspace_id=workspace_id, task_id=task_id
    )
    if row is None:
        return None
    return HeldWorkspaceTask(row.id, row.type, row.workspace_mode or "propose")


async def held_workspace_ids(session: AsyncSession, *, agent_id: str) -> list[str]:
    """The workspaces of the tasks ``agent_id`` holds now."""
    return await repository.held_workspace_ids(session, agent_id=agent_id)


def is_terminal(task: Task) -> bool:
    return T(task.status) in TERMINAL


async def agent_holds_file(session: AsyncSession, *, agent_id: str, file_id: str) -> bool:
    """Whether a task the agent holds now has this file attached (its agent may
    then download it)."""
    return file_id in await repository.held_file_ids(session, agent_id=agent_id)

"""Task rules on the submitters' side: submit (with idempotency), read, list,
cancel, retry, feedback; the errors the task engine raises; what code tasks
need of the tasks an agent holds.

The engine's other sides have their own modules: ``ymera.tasks.claims``
(queued tasks assigned to free agents) and ``ymera.tasks.leases`` (an
attempt's fenced reports and the sweepers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
from ymera.tasks.schemas import RetryPolicy, TaskCreate
from ymera.tasks.status import (
    CANCELLABLE,
    RETRYABLE_BY_HAND,
    TERMINAL,
    IllegalTaskTransition,
    TaskStatus,
)
from ymera.tasks.transitions import move, notify_finished, record_transition

T = TaskStatus

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
class HeldWorkspaceTask:
    """A task an agent holds that carries a workspace."""

    id: str
    type: str
    workspace_mode: str


# --- helpers ---------------------------------------------------------------------------


def request_hash(body: Any) -> str:
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _can_see(principal: Principal, task: Task) -> bool:
    if principal.can(Permission.TASKS_OPERATE) or task.created_by == principal.user_id:
        return True
    return principal.kind == "agent" and task.agent_id == principal.agent_id


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
    previous = move(task, T.CANCELLED, now)
    task.finished_at = now
    task.error = {"message": reason or "cancelled", "type": "cancelled"}
    task.lease_token = None
    task.lease_expires_at = None
    record_transition(session, task, previous, principal.id)
    await notify_finished(session, task, now)
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
    previous = move(task, T.PENDING, now)
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
    record_transition(session, task, previous, principal.id)
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

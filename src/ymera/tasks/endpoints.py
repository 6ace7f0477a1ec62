"""`/api/v1/tasks`: submit (one or a batch), get, list, cancel, retry, feedback,
and a live SSE view of one task."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError

from ymera.agents import repository as agents_repository
from ymera.auth.dependencies import require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.errors import SHUTTING_DOWN_RESPONSES, Unauthorized, Unprocessable
from ymera.kit import jsonx
from ymera.kit.pagination import Page
from ymera.middleware import accepting_work
from ymera.state import AppState, DbSession, State
from ymera.tasks import push, service
from ymera.tasks.schemas import (
    CallbackIn,
    FeedbackIn,
    RetryPolicy,
    TaskBatchCreate,
    TaskCreate,
    TaskOut,
    TaskRef,
)
from ymera.tasks.status import TaskStatus
from ymera.tasks.writer import TaskWriter

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])
CANCEL_CHANNEL = "task.cancel"  # cancels for workers connected to another replica

Read = Annotated[Principal, Depends(require(Permission.TASKS_READ))]
_WRITE = require(Permission.TASKS_WRITE)
Write = Annotated[Principal, Depends(_WRITE)]
HEADER_MAX = 200  # characters of an Idempotency-Key or Prefer header
PreferHeader = Annotated[
    str | None,
    Header(
        alias="Prefer",
        max_length=HEADER_MAX,
        description="`return=minimal` (RFC 7240): answer each task's id and status only "
        "(much smaller answers for large batches); the answer then carries "
        "`Preference-Applied: return=minimal`.",
    ),
]
IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=HEADER_MAX,
        description="Same key + same body returns the original task(s); a different body is 409.",
    ),
]


def _retry_default(state: AppState) -> RetryPolicy:
    cfg = state.settings.tasks
    return RetryPolicy(
        max_attempts=cfg.max_attempts,
        initial=cfg.retry_initial,
        factor=cfg.retry_factor,
        cap=cfg.retry_cap,
    )


_REPLAY: dict[int | str, dict[str, Any]] = {
    200: {"description": "Replay of an earlier request with the same Idempotency-Key"}
}
_INTAKE = {**_REPLAY, **SHUTTING_DOWN_RESPONSES}  # submissions stop when shutdown begins
TimeQuery = Annotated[
    str | None,
    Query(
        description="RFC 3339 date-time with a timezone.",
        json_schema_extra={"format": "date-time"},
    ),
]


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise Unprocessable(f"{name} is not a valid date-time", code="invalid_time") from exc
    if parsed.tzinfo is None:
        raise Unprocessable(f"{name} needs a timezone", code="invalid_time")
    return parsed


async def _submit(
    state: AppState,
    principal: Principal,
    specs: list[TaskCreate],
    body: Any,
    idempotency_key: str | None,
) -> tuple[list[Any], bool]:
    """Submit through the group-commit writer (with an idempotency key, in a
    transaction of its own: the key's check and insert must be one unit)."""
    kwargs: dict[str, Any] = {
        "principal": principal,
        "specs": specs,
        "now": state.clock.now(),
        "default_retry": _retry_default(state),
    }
    if idempotency_key:
        async with state.db.transaction() as session:
            return await service.submit(
                session,
                **kwargs,
                idempotency_key=idempotency_key,
                idempotency_ttl=state.settings.tasks.idempotency_ttl,
                body_hash=service.request_hash(body.model_dump(mode="json")),
            )

    # The rows are built here, off the writer's serial path. Only for the op's
    # first run: a replay (its batch failed) builds them afresh, as the failed
    # run may have changed them (assigned as inserted).
    built: service.NewTasks | None = service.new_tasks(**kwargs)

    async def op(session: Any) -> tuple[list[Any], bool]:
        nonlocal built
        first, built = built, None
        return await service.submit(session, **kwargs, defer=True, built=first)

    writer: TaskWriter = state.extras["writer"]
    result: tuple[list[Any], bool] = await writer.submit(op, creates_work=True, weight=len(specs))
    return result


async def submit_task(
    body: TaskCreate,
    state: State,
    principal: Write,
    idempotency_key: IdemKey = None,
    prefer: PreferHeader = None,
) -> Response:
    """Submit a task. It is durable when this answers. With `Idempotency-Key`, a
    repeat of the same request returns the original task (200 instead of 201).
    The answer is the task (`TaskOut`), or its id and status (`TaskRef`) with
    `Prefer: return=minimal`."""
    tasks, created = await _submit(state, principal, [body], body, idempotency_key)
    minimal = _minimal(prefer)
    return _json_response(_REF if minimal else _TASK, tasks[0], 201 if created else 200, minimal)


async def submit_batch(
    body: TaskBatchCreate,
    state: State,
    principal: Write,
    idempotency_key: IdemKey = None,
    prefer: PreferHeader = None,
) -> Response:
    """Submit up to 1,000 tasks in one request, all durable (one transaction). The
    answer lists the tasks in order (`TaskOut`), or their ids and statuses
    (`TaskRef`) with `Prefer: return=minimal`."""
    tasks, created = await _submit(state, principal, body.tasks, body, idempotency_key)
    minimal = _minimal(prefer)
    return _json_response(_REFS if minimal else _TASKS, tasks, 201 if created else 200, minimal)


class _IntakeRoute(APIRoute):
    """The submit endpoints' route. FastAPI resolves an endpoint's dependencies
    and parameters generically, about a tenth of a single submit's server CPU;
    here a well-formed submission (a JSON body the endpoint's model accepts,
    headers within their limits) is read and handed to the endpoint directly,
    checked in the order FastAPI checks it (the drain, then the caller). Any
    other request goes through FastAPI's own handler, so what it answers (a
    422, an unsupported content type, ...) is FastAPI's, as before; the
    OpenAPI operation is the route's, unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()
        endpoint = self.endpoint
        model = _BODIES[endpoint]

        async def handler(request: Request) -> Response:
            headers = request.headers
            idempotency_key = headers.get("idempotency-key")
            prefer = headers.get("prefer")
            if (
                headers.get("content-type") != "application/json"
                or (idempotency_key is not None and len(idempotency_key) > HEADER_MAX)
                or (prefer is not None and len(prefer) > HEADER_MAX)
            ):
                return await standard(request)
            try:
                body = model.model_validate_json(await request.body())
            except ValidationError:
                return await standard(request)
            await accepting_work(request)
            state: AppState = request.app.state.ymera
            principal = await _WRITE(request)
            response: Response = await endpoint(
                body=body,
                state=state,
                principal=principal,
                idempotency_key=idempotency_key,
                prefer=prefer,
            )
            return response

        return handler


_BODIES: dict[Callable[..., Any], type[BaseModel]] = {
    submit_task: TaskCreate,
    submit_batch: TaskBatchCreate,
}
for _path, _endpoint, _model in (
    ("", submit_task, TaskOut | TaskRef),
    ("/batch", submit_batch, list[TaskOut] | list[TaskRef]),
):
    router.add_api_route(
        _path,
        _endpoint,
        methods=["POST"],
        response_model=_model,
        status_code=201,
        responses=_INTAKE,
        dependencies=[Depends(accepting_work)],
        route_class_override=_IntakeRoute,
    )


# Intake answers are validated and serialised once, by pydantic's own JSON
# encoder (a returned model would be validated again and dumped through the
# json module by FastAPI).
_TASK: TypeAdapter[Any] = TypeAdapter(TaskOut)
_TASKS: TypeAdapter[Any] = TypeAdapter(list[TaskOut])
_REF: TypeAdapter[Any] = TypeAdapter(TaskRef)
_REFS: TypeAdapter[Any] = TypeAdapter(list[TaskRef])


def _minimal(prefer: str | None) -> bool:
    """Whether the client prefers ``return=minimal`` (RFC 7240; case-insensitive,
    among other comma- or semicolon-separated preferences)."""
    if not prefer:
        return False
    tokens = (t.strip().lower().replace(" ", "") for t in prefer.replace(";", ",").split(","))
    return "return=minimal" in tokens


def _json_response(adapter: TypeAdapter[Any], value: Any, status: int, minimal: bool) -> Response:
    model = adapter.validate_python(value, from_attributes=True)
    headers = {"Preference-Applied": "return=minimal"} if minimal else None
    return Response(
        adapter.dump_json(model), status_code=status, media_type="application/json", headers=headers
    )


@router.get("", response_model=Page[TaskOut])
async def list_tasks(
    session: DbSession,
    principal: Read,
    status: Annotated[list[TaskStatus] | None, Query(description="Repeatable.")] = None,
    type: Annotated[list[str] | None, Query(description="Repeatable.")] = None,
    agent_id: Annotated[str | None, Query(max_length=36)] = None,
    created_after: TimeQuery = None,
    created_before: TimeQuery = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[TaskOut]:
    """List tasks, newest first (yours; all with tasks:operate)."""
    page = await service.list_tasks(
        session,
        principal=principal,
        statuses=[s.value for s in status or []],
        types=[t for t in type or [] if t],
        agent_id=agent_id,
        created_after=_parse_time(created_after, "created_after"),
        created_before=_parse_time(created_before, "created_before"),
        cursor=cursor,
        limit=limit,
    )
    return Page[TaskOut](
        items=[TaskOut.model_validate(t) for t in page.items], next_cursor=page.next_cursor
    )


@router.get("/{task_id}", response_model=TaskOut)
async def get_task(task_id: str, session: DbSession, principal: Read) -> TaskOut:
    """Get one task, with its result or error."""
    return TaskOut.model_validate(
        await service.get_task(session, principal=principal, task_id=task_id)
    )


@router.get("/{task_id}/routing")
async def get_routing(task_id: str, session: DbSession, principal: Read) -> dict[str, Any]:
    """Why the task went to its agent, for its latest assignment: strategy,
    candidates and their scores, rejections (`decision` is null before any)."""
    task, routing = await service.routing_of(session, principal=principal, task_id=task_id)
    if routing is None:
        return {"task_id": task.id, "attempt": task.attempt, "decision": None}
    return {"task_id": task.id, "attempt": routing.attempt, "decision": routing.decision}


@router.post("/{task_id}/cancel", response_model=TaskOut)
async def cancel_task(
    task_id: str,
    state: State,
    principal: Write,
    reason: Annotated[str | None, Query(max_length=500)] = None,
) -> TaskOut:
    """Cancel a PENDING, ASSIGNED or RUNNING task; a running agent gets a cancel message."""
    async with state.db.transaction() as session:
        task, held = await service.cancel(
            session, principal=principal, task_id=task_id, now=state.clock.now(), reason=reason
        )
    # Committed: now tell the agent.
    if held is not None and task.agent_id:
        conn = state.extras["hub"].get(task.agent_id)
        if conn is not None:
            conn.held.discard(task.id)
            conn.send(
                {
                    "type": "cancel",
                    "task_id": held.task_id,
                    "attempt": held.attempt,
                    "reason": reason or "cancelled",
                }
            )
        elif (agent := await _http_agent(state, task.agent_id)) is not None:
            state.extras["pusher"].send_cancel(
                agent,
                task_id=held.task_id,
                attempt=held.attempt,
                reason=reason or "cancelled",
            )
        else:
            # The worker is connected to another replica: its cancel loop tells it.
            await state.bus.publish(
                CANCEL_CHANNEL,
                {
                    "task_id": held.task_id,
                    "attempt": held.attempt,
                    "agent_id": task.agent_id,
                    "reason": reason or "cancelled",
                },
            )
    return TaskOut.model_validate(task)


async def _http_agent(state: AppState, agent_id: str) -> str | None:
    """The endpoint of a push (http) agent, or None for other agents."""
    async with state.db.transaction(readonly=True) as session:
        agent = await agents_repository.get(session, agent_id)
    if agent is None or agent.connection_mode != "http" or not agent.endpoint_url:
        return None
    return str(agent.endpoint_url)


@router.post("/{task_id}/retry", response_model=TaskOut)
async def retry_task(task_id: str, session: DbSession, state: State, principal: Write) -> TaskOut:
    """Re-drive a FAILED or DEAD task: back to PENDING with a fresh set of attempts."""
    return TaskOut.model_validate(
        await service.retry(session, principal=principal, task_id=task_id, now=state.clock.now())
    )


@router.post("/{task_id}/feedback", response_model=TaskOut)
async def task_feedback(
    task_id: str, body: FeedbackIn, session: DbSession, state: State, principal: Write
) -> TaskOut:
    """Score a finished task's outcome (0..1); the learning engine uses it."""
    task = await service.feedback(
        session,
        principal=principal,
        task_id=task_id,
        score=body.score,
        comment=body.comment,
        now=state.clock.now(),
    )
    return TaskOut.model_validate(task)


def _callback_token(
    authorization: Annotated[str, Header(description="Bearer ycb_... (the callback token)")] = "",
) -> str:
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(push.CALLBACK_PREFIX):
        raise Unauthorized(
            "Callback token required (Authorization: Bearer ycb_...)",
            code="invalid_callback_token",
        )
    return token


@router.post(
    "/{task_id}/callback",
    response_model=TaskOut,
    responses={401: {"description": "Missing, invalid or already used callback token"}},
)
async def task_callback(
    task_id: str,
    body: CallbackIn,
    session: DbSession,
    state: State,
    token: Annotated[str, Depends(_callback_token)],
) -> TaskOut:
    """For http agents that accepted a task with 202: report its outcome, with the
    single-use callback token YMERA sent along with the task (docs/http-agents.md)."""
    task = await push.handle_callback(
        state,
        session,
        task_id=task_id,
        attempt=body.attempt,
        token=token,
        succeeded=body.status == "succeeded",
        output=body.output,
        error={"message": body.error_message or "failed"},
        retryable=body.retryable,
    )
    return TaskOut.model_validate(task)


@router.get(
    "/{task_id}/events",
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def task_events(
    task_id: str, request: Request, state: State, principal: Read
) -> StreamingResponse:
    """Follow one task live (SSE): its state changes, then progress and streamed output
    chunks from the agent as they come. Ends when the task reaches a final state."""
    async with state.db.transaction(readonly=True) as session:
        task = await service.get_task(session, principal=principal, task_id=task_id)
        snapshot = TaskOut.model_validate(task).model_dump(mode="json")

    async def body() -> AsyncIterator[bytes]:
        from ymera.agents.connect import TASK_OUTPUT_CHANNEL
        from ymera.events.service import EVENTS_CHANNEL

        yield _sse("snapshot", snapshot)
        if snapshot["status"] in ("SUCCEEDED", "FAILED", "CANCELLED", "DEAD"):
            return
        async with state.bus.subscribe(EVENTS_CHANNEL, TASK_OUTPUT_CHANNEL) as sub:
            # Re-read after subscribing so a change in between is not missed.
            async with state.db.transaction(readonly=True) as session:
                fresh = await service.get_task(session, principal=principal, task_id=task_id)
            if fresh.status != snapshot["status"]:
                yield _sse("state", TaskOut.model_validate(fresh).model_dump(mode="json"))
            if service.is_terminal(fresh):
                return
            while True:
                message = await sub.get(timeout=state.settings.events.sse_keepalive_seconds)
                if message is None:
                    yield b": keepalive\n\n"
                    continue
                data = message.data
                if message.channel == TASK_OUTPUT_CHANNEL:
                    if data.get("task_id") == task_id:
                        yield _sse(str(data.get("kind", "output")), data)
                    continue
                if data.get("resource_type") != "task" or data.get("resource_id") != task_id:
                    continue
                yield _sse("state", data)
                if data.get("data", {}).get("to") in ("SUCCEEDED", "FAILED", "CANCELLED", "DEAD"):
                    return

    return StreamingResponse(body(), media_type="text/event-stream")


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {jsonx.dumps(data)}\n\n".encode()

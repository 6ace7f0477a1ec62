"""The event stream: Server-Sent Events with Last-Event-ID resume, or a JSON page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from ymera.auth.dependencies import require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.errors import BadRequest
from ymera.events import service
from ymera.events.schemas import EventPage
from ymera.kit import jsonx
from ymera.state import State

router = APIRouter(prefix="/api/v1", tags=["events"])

ReadEvents = Annotated[Principal, Depends(require(Permission.EVENTS_READ))]


def _parse_cursor(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        cursor = int(value)
    except ValueError as exc:
        raise BadRequest(f"{name} must be an event seq (integer)", code="invalid_cursor") from exc
    if cursor < 0:
        raise BadRequest(f"{name} must not be negative", code="invalid_cursor")
    return cursor


def _sse(payload: dict[str, object]) -> bytes:
    data = jsonx.dumps(payload)
    return f"id: {payload['seq']}\nevent: {payload['type']}\ndata: {data}\n\n".encode()


@router.get(
    "/events",
    response_model=EventPage,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": "SSE stream of EventOut"}
                }
            },
            "description": "A JSON page, or an SSE stream when `Accept: text/event-stream`.",
        }
    },
)
async def events(
    request: Request,
    state: State,
    _: ReadEvents,
    type: Annotated[
        list[str] | None,
        Query(description="Event types to keep; `task.*` matches a prefix. Repeatable."),
    ] = None,
    resource_type: Annotated[str | None, Query(max_length=50)] = None,
    resource_id: Annotated[str | None, Query(max_length=100)] = None,
    after: Annotated[
        str | None,
        Query(pattern=r"^[0-9]*$", description="Start after this seq (same as Last-Event-ID)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="JSON page size.")] = 100,
    last_event_id: Annotated[str, Header(alias="Last-Event-ID", pattern=r"^[0-9]*$")] = "",
) -> EventPage | StreamingResponse:
    """Every state change, in order.

    With `Accept: text/event-stream` this is a live Server-Sent Events stream:
    each event has an `id:` line (its `seq`); reconnect with `Last-Event-ID`
    (or `after`) to resume with no gap and no duplicate. Without an
    `after`/`Last-Event-ID` the stream starts at the live end. The stream
    opens with a `retry:` line and a `: live` comment once it is subscribed
    (every event committed after that is delivered), and sends a `: keepalive`
    comment when idle. Otherwise it answers a JSON page of events after
    `after` (default: from the start).
    """
    types = tuple(t for t in (type or []) if t)
    flt = service.EventFilter(types=types, resource_type=resource_type, resource_id=resource_id)
    cursor = _parse_cursor(last_event_id, "Last-Event-ID")
    if cursor is None:
        cursor = _parse_cursor(after, "after")
    if "text/event-stream" not in request.headers.get("accept", ""):
        items = await service.list_events(state.db, flt=flt, after=cursor or 0, limit=limit)
        nxt = items[-1].seq if len(items) == limit else None
        return EventPage(items=list(items), next_after=nxt)

    async def body() -> AsyncIterator[bytes]:
        live = False
        async for batch in service.stream_events(
            state.db,
            state.bus,
            flt=flt,
            after=cursor,
            keepalive=state.settings.events.sse_keepalive_seconds,
        ):
            if batch is not None:
                yield b"".join(_sse(payload) for payload in batch)
            elif live:
                yield b": keepalive\n\n"
            else:
                # The stream is subscribed: nothing committed from now on is missed.
                live = True
                yield b"retry: 2000\n: live\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )

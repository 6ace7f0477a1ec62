"""`/api/v1/chat/sessions`: sessions, participants, messages and history (the live
side is the WebSocket in ``ymera.chat.ws``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from ymera.auth.dependencies import require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.chat import service
from ymera.chat.schemas import (
    MessageCreate,
    MessageOut,
    ParticipantOut,
    ParticipantRef,
    SessionCreate,
    SessionOut,
)
from ymera.chat.ws import default_retry
from ymera.kit.pagination import Page
from ymera.state import DbSession, State

router = APIRouter(prefix="/api/v1/chat/sessions", tags=["chat"])

Read = Annotated[Principal, Depends(require(Permission.CHAT_READ))]
Write = Annotated[Principal, Depends(require(Permission.CHAT_WRITE))]


def _out(view: service.SessionView) -> SessionOut:
    out = SessionOut.model_validate(view.session)
    out.participants = [ParticipantOut.model_validate(p) for p in view.participants]
    return out


@router.post("", response_model=SessionOut, status_code=201)
async def create_session(
    body: SessionCreate, session: DbSession, state: State, principal: Write
) -> SessionOut:
    """Create a session with its title and participants (users by id or username,
    agents by id or name; the creator is one of them). An unknown participant: 422
    `unknown_participant`."""
    view = await service.create_session(
        session,
        principal=principal,
        title=body.title,
        participants=body.participants,
        now=state.clock.now(),
    )
    return _out(view)


@router.get("", response_model=Page[SessionOut])
async def list_sessions(
    session: DbSession,
    principal: Read,
    status: Literal["active", "archived"] | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[SessionOut]:
    """The sessions you take part in (admins and operators: all), newest first."""
    page = await service.list_sessions(
        session, principal=principal, status=status, cursor=cursor, limit=limit
    )
    return Page[SessionOut](items=[_out(v) for v in page.items], next_cursor=page.next_cursor)


@router.get("/{session_id}", response_model=SessionOut)
async def get_session(session_id: str, session: DbSession, principal: Read) -> SessionOut:
    """One session with its participants (404 `chat_session_not_found` for others)."""
    return _out(await service.get_session(session, principal=principal, session_id=session_id))


@router.post("/{session_id}/archive", response_model=SessionOut)
async def archive_session(
    session_id: str, session: DbSession, state: State, principal: Write
) -> SessionOut:
    """Archive a session (its creator or an admin): its history stays readable; new
    messages answer 409 `chat_session_archived`."""
    view = await service.archive_session(
        session, principal=principal, session_id=session_id, now=state.clock.now()
    )
    return _out(view)


@router.post("/{session_id}/participants", response_model=SessionOut)
async def add_participant(
    session_id: str, body: ParticipantRef, session: DbSession, state: State, principal: Write
) -> SessionOut:
    """Add a user or an agent (the creator or an admin)."""
    view = await service.add_participant(
        session, principal=principal, session_id=session_id, ref=body, now=state.clock.now()
    )
    return _out(view)


@router.delete("/{session_id}/participants/{participant_id}", status_code=204)
async def remove_participant(
    session_id: str, participant_id: str, session: DbSession, state: State, principal: Write
) -> Response:
    """Remove a participant (`user:<id>` or `agent:<id>`; the creator or an admin, or
    the participant itself to leave). Their open WebSockets to the session close
    with code 4403."""
    await service.remove_participant(
        session,
        principal=principal,
        session_id=session_id,
        participant_id=participant_id,
        now=state.clock.now(),
    )
    return Response(status_code=204)


@router.post("/{session_id}/messages", response_model=MessageOut, status_code=201)
async def post_message(
    session_id: str, body: MessageCreate, session: DbSession, state: State, principal: Write
) -> MessageOut:
    """Post a message (participants only). It takes the session's next `seq` and is
    broadcast to every connected participant. `file_ids` must name files you can
    read (422 `unknown_file`); with `to`, an agent is asked: the message becomes a
    `chat` task (`task_id`) and the agent's reply arrives as a message."""
    message = await service.post_message(
        session,
        principal=principal,
        session_id=session_id,
        content=body.content,
        file_ids=body.file_ids,
        to=body.to,
        now=state.clock.now(),
        default_retry=default_retry(state),
        history=state.settings.chat.history_for_agents,
        max_chars=state.settings.chat.max_message_chars,
    )
    return MessageOut.model_validate(message)


@router.get("/{session_id}/messages", response_model=Page[MessageOut])
async def history(
    session_id: str,
    session: DbSession,
    principal: Read,
    after_seq: Annotated[
        int | None, Query(ge=0, description="Messages after this seq, going forward.")
    ] = None,
    before_seq: Annotated[
        int | None, Query(ge=1, description="Messages before this seq (default: the latest).")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[MessageOut]:
    """A page of the history, in seq order. By default the latest messages, with a
    cursor going back in time; with `after_seq`, the messages after it, with a cursor
    going forward."""
    page = await service.history(
        session,
        principal=principal,
        session_id=session_id,
        after_seq=after_seq,
        before_seq=before_seq,
        cursor=cursor,
        limit=limit,
    )
    return Page[MessageOut](
        items=[MessageOut.model_validate(m) for m in page.items], next_cursor=page.next_cursor
    )

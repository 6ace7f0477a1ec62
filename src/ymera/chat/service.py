"""Rules of the Chat API: sessions, participants, messages and their numbering,
agents asked in a message, and their replies.

A message takes the session's next ``seq`` in the transaction that stores it
(``repository.take_seq``). What must reach connected clients (a new message, a
participant removed) is queued on the unit of work and handed, once it has
committed, to the replica's chat hub, which publishes it on the bus; a rollback
drops it. Clients that miss a publication catch up from the database by seq.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.agents import service as agents_service
from ymera.auth import service as auth_service
from ymera.auth.permissions import Role
from ymera.auth.principal import Principal
from ymera.chat import repository
from ymera.chat.errors import (
    NotAParticipant,
    ParticipantNotFound,
    SessionArchived,
    SessionNotFound,
    UnknownAgent,
    UnknownParticipant,
)
from ymera.chat.schemas import AddressedTo, MessageOut, ParticipantRef, UserRef
from ymera.errors import Forbidden
from ymera.events.outbox import record_event
from ymera.files import service as files_service
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.chat import ChatMessage, ChatParticipant, ChatSession, ChatTask
from ymera.tasks import hooks
from ymera.tasks import service as tasks_service
from ymera.tasks.schemas import RetryPolicy, TaskCreate

CHAT_TASK_TYPE = "chat"
OUTGOING = "ymera_chat_outgoing"  # session.info: frames to publish once committed
HISTORY_CHARS = 2000  # per message in a chat task's history


def channel(session_id: str) -> str:
    """The bus channel of one session's live frames."""
    return f"chat.{session_id}"


def participant_of(principal: Principal) -> str:
    """Who a principal is in a session: its agent for an agent key, else its user."""
    if principal.kind == "agent" and principal.agent_id:
        return f"agent:{principal.agent_id}"
    return f"user:{principal.user_id}"


def _sees_all(principal: Principal) -> bool:
    return principal.kind == "user" and principal.role in (Role.ADMIN, Role.OPERATOR)


def _is_admin(principal: Principal) -> bool:
    return principal.kind == "user" and principal.role == Role.ADMIN


# --- after commit ------------------------------------------------------------------------


def _publish_after_commit(session: AsyncSession, session_id: str, frame: dict[str, Any]) -> None:
    session.info.setdefault(OUTGOING, []).append((channel(session_id), frame))


def take_outgoing(info: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The frames a committed unit of work queued for the bus (taken once)."""
    return list(info.pop(OUTGOING, None) or [])


@sa_event.listens_for(Session, "after_rollback")
def _drop_outgoing(session: Session) -> None:
    session.info.pop(OUTGOING, None)


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_outgoing_soft(session: Session, _previous: Any) -> None:
    session.info.pop(OUTGOING, None)


def message_frame(message: ChatMessage) -> dict[str, Any]:
    """A message as it travels on the bus and to clients (``recovered`` is set per client)."""
    body = MessageOut.model_validate(message).model_dump(mode="json")
    return {"type": "message", "seq": message.seq, "message": body}


# --- sessions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionView:
    session: ChatSession
    participants: list[ChatParticipant]


async def _resolve(session: AsyncSession, ref: ParticipantRef) -> tuple[str, str, str]:
    """(participant id, kind, display name) of a reference; 422 when it names nobody."""
    if isinstance(ref, UserRef):
        user = await auth_service.find_user(session, ref=ref.user)
        if user is None or not user.is_active:
            raise UnknownParticipant(f"No user {ref.user!r}", user=ref.user)
        return f"user:{user.id}", "user", user.username
    agent = await agents_service.find_agent(session, ref=ref.agent)
    if agent is None:
        raise UnknownParticipant(f"No agent {ref.agent!r}", agent=ref.agent)
    return f"agent:{agent.id}", "agent", agent.name


def _self_participant(principal: Principal, now: datetime, session_id: str) -> ChatParticipant:
    kind = "agent" if principal.kind == "agent" and principal.agent_id else "user"
    name = principal.username or participant_of(principal)
    return ChatParticipant(
        session_id=session_id,
        participant_id=participant_of(principal),
        kind=kind,
        name=name,
        added_at=now,
    )


async def create_session(
    session: AsyncSession,
    *,
    principal: Principal,
    title: str,
    participants: list[ParticipantRef],
    now: datetime,
) -> SessionView:
    """A new active session with its creator and ``participants``."""
    chat = ChatSession(
        id=new_id(),
        title=title,
        status="active",
        created_by=participant_of(principal),
        last_seq=0,
        created_at=now,
        updated_at=now,
        archived_at=None,
    )
    members = {participant_of(principal): _self_participant(principal, now, chat.id)}
    for ref in participants:
        pid, kind, name = await _resolve(session, ref)
        members.setdefault(
            pid,
            ChatParticipant(
                session_id=chat.id, participant_id=pid, kind=kind, name=name, added_at=now
            ),
        )
    await repository.add(session, chat)
    await repository.add(session, *members.values())
    _event(session, chat, "created", principal, participants=sorted(members))
    return SessionView(chat, list(members.values()))


def _event(
    session: AsyncSession, chat: ChatSession, kind: str, principal: Principal | None, **data: Any
) -> None:
    record_event(
        session,
        type=f"chat_session.{kind}",
        resource_type="chat_session",
        resource_id=chat.id,
        data={"title": chat.title, **data},
        actor=principal.id if principal is not None else "chat",
    )


async def _visible(
    session: AsyncSession, principal: Principal, session_id: str, *, for_update: bool = False
) -> ChatSession:
    chat = await repository.get_session(session, session_id, for_update=for_update)
    if chat is None:
        raise SessionNotFound(f"No chat session {session_id}")
    if _sees_all(principal):
        return chat
    if not await repository.is_participant(session, session_id, participant_of(principal)):
        raise NotAParticipant(f"No chat session {session_id}")
    return chat


async def get_session(
    session: AsyncSession, *, principal: Principal, session_id: str
) -> SessionView:
    """A session its participants (admins and operators: anyone) may see."""
    chat = await _visible(session, principal, session_id)
    return SessionView(chat, list(await repository.participants(session, chat.id)))


async def list_sessions(
    session: AsyncSession,
    *,
    principal: Principal,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> Slice[SessionView]:
    """Newest first: the sessions the principal takes part in (admins and operators:
    every session)."""
    after = decode_cursor(cursor)
    before_id = str(after["id"]) if after and "id" in after else None
    rows = list(
        await repository.list_sessions(
            session,
            participant_id=None if _sees_all(principal) else participant_of(principal),
            status=status,
            before_id=before_id,
            limit=limit + 1,
        )
    )
    next_cursor = encode_cursor({"id": rows[limit - 1].id}) if len(rows) > limit else None
    rows = rows[:limit]
    by_session: dict[str, list[ChatParticipant]] = {r.id: [] for r in rows}
    for p in await repository.participants_of(session, [r.id for r in rows]):
        by_session[p.session_id].append(p)
    return Slice([SessionView(r, by_session[r.id]) for r in rows], next_cursor)


async def _managed(session: AsyncSession, principal: Principal, session_id: str) -> ChatSession:
    chat = await _visible(session, principal, session_id, for_update=True)
    if not (_is_admin(principal) or chat.created_by == participant_of(principal)):
        raise Forbidden(
            "Only the session's creator or an admin may change it", code="not_session_owner"
        )
    return chat


async def archive_session(
    session: AsyncSession, *, principal: Principal, session_id: str, now: datetime
) -> SessionView:
    """Archive a session (its creator or an admin): read-only from now on."""
    chat = await _managed(session, principal, session_id)
    if chat.status != "archived":
        chat.status = "archived"
        chat.archived_at = now
        chat.updated_at = now
        await session.flush()
        _event(session, chat, "archived", principal)
        _publish_after_commit(session, chat.id, {"type": "archived", "session_id": chat.id})
    return SessionView(chat, list(await repository.participants(session, chat.id)))


async def add_participant(
    session: AsyncSession,
    *,
    principal: Principal,
    session_id: str,
    ref: ParticipantRef,
    now: datetime,
) -> SessionView:
    """Add a user or an agent (its creator or an admin); adding a member again is a no-op."""
    chat = await _managed(session, principal, session_id)
    pid, kind, name = await _resolve(session, ref)
    if not await repository.is_participant(session, chat.id, pid):
        await repository.add(
            session,
            ChatParticipant(
                session_id=chat.id, participant_id=pid, kind=kind, name=name, added_at=now
            ),
        )
        chat.updated_at = now
        _event(session, chat, "participant_added", principal, participant_id=pid)
        _publish_after_commit(
            session,
            chat.id,
            {"type": "participants", "added": pid, "session_id": chat.id},
        )
    return SessionView(chat, list(await repository.participants(session, chat.id)))


async def remove_participant(
    session: AsyncSession,
    *,
    principal: Principal,
    session_id: str,
    participant_id: str,
    now: datetime,
) -> None:
    """Remove a participant (the creator or an admin; anyone may leave): their open
    connections to the session are closed (code 4403)."""
    leaving = participant_id == participant_of(principal)
    if leaving:
        chat = await _visible(session, principal, session_id, for_update=True)
    else:
        chat = await _managed(session, principal, session_id)
    if not await repository.remove_participant(session, chat.id, participant_id):
        raise ParticipantNotFound(f"{participant_id} is not a participant of {session_id}")
    chat.updated_at = now
    _event(session, chat, "participant_removed", principal, participant_id=participant_id)
    _publish_after_commit(
        session,
        chat.id,
        {"type": "participants", "removed": participant_id, "session_id": chat.id},
    )


# --- messages ----------------------------------------------------------------------------


async def post_message(
    session: AsyncSession,
    *,
    principal: Principal,
    session_id: str,
    content: str,
    file_ids: list[str],
    to: AddressedTo | None,
    now: datetime,
    default_retry: RetryPolicy,
    history: int = 20,
    max_chars: int = 32_000,
) -> ChatMessage:
    """Store a message with the session's next seq (participants only; 409
    `chat_session_archived` once archived). Its files must exist and be readable
    by the poster (422 `unknown_file`); addressed to an agent, it becomes a `chat`
    task whose reply is stored as a message when the task ends."""
    if not await repository.is_participant(session, session_id, participant_of(principal)):
        if await repository.get_session(session, session_id) is None:
            raise SessionNotFound(f"No chat session {session_id}")
        raise NotAParticipant(f"No chat session {session_id}")
    if len(content) > max_chars:
        from ymera.errors import Unprocessable

        raise Unprocessable(
            f"content: at most {max_chars} characters", code="message_too_long", limit=max_chars
        )
    file_ids = list(dict.fromkeys(file_ids))
    await files_service.check_references(session, principal=principal, file_ids=file_ids, now=now)
    agent_id = await _addressee(session, to)
    seq = await repository.take_seq(session, session_id, now)
    if seq is None:
        raise SessionArchived(f"Chat session {session_id} is archived")
    message = ChatMessage(
        id=new_id(),
        session_id=session_id,
        seq=seq,
        sender_id=participant_of(principal),
        kind="message",
        content=content,
        file_ids=file_ids,
        addressed_to=to.model_dump(mode="json", exclude_defaults=True) if to else None,
        task_id=None,
        reply_to=None,
        created_at=now,
    )
    if to is not None:
        message.task_id = await _ask_agent(
            session,
            principal=principal,
            message=message,
            to=to,
            agent_id=agent_id,
            now=now,
            default_retry=default_retry,
            history=history,
        )
    await _store(session, message)
    if file_ids:
        await files_service.attach(
            session,
            file_ids=file_ids,
            resource_type="chat_message",
            resource_id=message.id,
            now=now,
        )
    return message


async def _store(session: AsyncSession, message: ChatMessage) -> None:
    await repository.add(session, message)
    record_event(
        session,
        type="chat.message",
        resource_type="chat_session",
        resource_id=message.session_id,
        data={
            "message_id": message.id,
            "seq": message.seq,
            "sender_id": message.sender_id,
            "kind": message.kind,
            "task_id": message.task_id,
        },
        actor=message.sender_id,
    )
    _publish_after_commit(session, message.session_id, message_frame(message))


async def _addressee(session: AsyncSession, to: AddressedTo | None) -> str | None:
    if to is None or to.agent is None:
        return None
    agent = await agents_service.find_agent(session, ref=to.agent)
    if agent is None:
        raise UnknownAgent(f"to.agent: no agent {to.agent!r}", agent=to.agent)
    return agent.id


async def _ask_agent(
    session: AsyncSession,
    *,
    principal: Principal,
    message: ChatMessage,
    to: AddressedTo,
    agent_id: str | None,
    now: datetime,
    default_retry: RetryPolicy,
    history: int,
) -> str:
    """Submit the `chat` task a message addressed to an agent becomes."""
    earlier = await repository.messages_before(session, message.session_id, message.seq, history)
    task_input = {
        "session_id": message.session_id,
        "message_id": message.id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "content": message.content,
        "file_ids": list(message.file_ids),
        "history": [
            {
                "seq": m.seq,
                "sender_id": m.sender_id,
                "kind": m.kind,
                "content": m.content[:HISTORY_CHARS],
            }
            for m in reversed(earlier)
        ],
    }
    spec = TaskCreate(
        type=CHAT_TASK_TYPE,
        input=task_input,
        file_ids=list(message.file_ids),
        # Addressed by name: that agent and no other answers (the task waits for
        # a free slot of its); by type or capability: routing chooses.
        preferred_agents=[agent_id] if agent_id else [],
        preferred_only=agent_id is not None,
        agent_type=to.agent_type,
        required_capabilities=list(to.capabilities),
    )
    records, _ = await tasks_service.submit(
        session, principal=principal, specs=[spec], now=now, default_retry=default_retry
    )
    record = records[0]
    task_id = str(record["id"] if isinstance(record, dict) else record.id)
    await repository.add(
        session,
        ChatTask(task_id=task_id, session_id=message.session_id, message_id=message.id, done=False),
    )
    return task_id


async def history(
    session: AsyncSession,
    *,
    principal: Principal,
    session_id: str,
    after_seq: int | None,
    before_seq: int | None,
    cursor: str | None,
    limit: int,
) -> Slice[ChatMessage]:
    """A page of messages, in seq order. With ``after_seq``: the ones after it,
    and the cursor goes on forward; otherwise the ones before ``before_seq`` (the
    latest by default), and the cursor goes back in time."""
    await _visible(session, principal, session_id)
    position = decode_cursor(cursor)
    if position is not None:
        after_seq = _int(position.get("after"))
        before_seq = _int(position.get("before"))
    if after_seq is not None:
        rows = list(await repository.messages_after(session, session_id, after_seq, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor({"after": rows[-1].seq}) if more else None
        return Slice(rows, next_cursor)
    rows = list(await repository.messages_before(session, session_id, before_seq, limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    next_cursor = encode_cursor({"before": rows[0].seq}) if more else None
    return Slice(rows, next_cursor)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- for the WebSocket hub ---------------------------------------------------------------


@dataclass(frozen=True)
class StreamStart:
    """What a new connection to a session starts from."""

    session_id: str
    participant_id: str
    last_seq: int
    open_tasks: dict[str, str]  # task id -> the message that asked


async def open_stream(
    session: AsyncSession, *, principal: Principal, session_id: str
) -> StreamStart:
    """Check that the principal takes part in the session (404 otherwise); its
    latest seq and the `chat` tasks still to answer (whose chunks the client sees)."""
    pid = participant_of(principal)
    chat = await repository.get_session(session, session_id)
    if chat is None or not await repository.is_participant(session, session_id, pid):
        raise SessionNotFound(f"No chat session {session_id}")
    return StreamStart(
        session_id=chat.id,
        participant_id=pid,
        last_seq=chat.last_seq,
        open_tasks=await repository.open_chat_tasks(session, chat.id),
    )


async def messages_after(
    session: AsyncSession, *, session_id: str, after_seq: int, limit: int
) -> list[ChatMessage]:
    """Oldest first, up to ``limit`` messages with a seq above ``after_seq`` (no
    access check: the hub checked the connection when it opened)."""
    return list(await repository.messages_after(session, session_id, after_seq, limit))


async def latest_seq(session: AsyncSession, *, session_id: str) -> int | None:
    return await repository.last_seq(session, session_id)


async def sees_messages(
    session: AsyncSession, *, principal: Principal, message_ids: list[str]
) -> bool:
    """Whether the principal may read a session holding one of these messages."""
    if _sees_all(principal):
        return True
    pid = participant_of(principal)
    for session_id in await repository.sessions_with_file(session, message_ids):
        if await repository.is_participant(session, session_id, pid):
            return True
    return False


# --- agent replies -----------------------------------------------------------------------


def _reply_text(result: dict[str, Any] | None) -> str:
    """An agent's answer: its result's `content` (or `text`, `answer`), else the
    whole result as JSON."""
    if not result:
        return ""
    for key in ("content", "text", "answer", "value"):
        value = result.get(key)
        if isinstance(value, str):
            return value
    from ymera.kit import jsonx

    return jsonx.dumps(result)


@hooks.on_task_finished
async def on_task_finished(session: AsyncSession, finished: hooks.TaskFinished) -> None:
    """A `chat` task ended: its reply (or why there is none) becomes one message of
    the session, in the transaction that ends the task."""
    if finished.type != CHAT_TASK_TYPE:
        return
    chat_task = await repository.get_chat_task(session, finished.id, for_update=True)
    if chat_task is None or chat_task.done:
        return
    chat_task.done = True
    sender = f"agent:{finished.agent_id}" if finished.agent_id else "system"
    if finished.status == "SUCCEEDED":
        kind, content = "agent_reply", _reply_text(finished.result)
    else:
        reason = (finished.error or {}).get("message") or finished.status.lower()
        kind, content = "agent_error", f"The agent could not answer ({finished.status}): {reason}"
    if finished.agent_id and not await repository.is_participant(
        session, chat_task.session_id, sender
    ):
        agent = await agents_service.find_agent(session, ref=finished.agent_id)
        await repository.add(
            session,
            ChatParticipant(
                session_id=chat_task.session_id,
                participant_id=sender,
                kind="agent",
                name=agent.name if agent is not None else sender,
                added_at=finished.at,
            ),
        )
    seq = await repository.take_seq(session, chat_task.session_id, finished.at, any_status=True)
    if seq is None:
        return  # the session is gone
    await _store(
        session,
        ChatMessage(
            id=new_id(),
            session_id=chat_task.session_id,
            seq=seq,
            sender_id=sender,
            kind=kind,
            content=content,
            file_ids=[],
            addressed_to=None,
            task_id=finished.id,
            reply_to=chat_task.message_id,
            created_at=finished.at,
        ),
    )

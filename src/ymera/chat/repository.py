"""Queries of the Chat API (no rules)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.models.chat import ChatMessage, ChatParticipant, ChatSession, ChatTask


async def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)
    await session.flush()


async def get_session(
    session: AsyncSession, session_id: str, *, for_update: bool = False
) -> ChatSession | None:
    stmt = select(ChatSession).where(ChatSession.id == session_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def participants(session: AsyncSession, session_id: str) -> Sequence[ChatParticipant]:
    stmt = (
        select(ChatParticipant)
        .where(ChatParticipant.session_id == session_id)
        .order_by(ChatParticipant.added_at, ChatParticipant.participant_id)
    )
    return (await session.execute(stmt)).scalars().all()


async def participants_of(
    session: AsyncSession, session_ids: Sequence[str]
) -> Sequence[ChatParticipant]:
    if not session_ids:
        return []
    stmt = (
        select(ChatParticipant)
        .where(ChatParticipant.session_id.in_(session_ids))
        .order_by(ChatParticipant.added_at, ChatParticipant.participant_id)
    )
    return (await session.execute(stmt)).scalars().all()


async def is_participant(session: AsyncSession, session_id: str, participant_id: str) -> bool:
    stmt = select(ChatParticipant.session_id).where(
        ChatParticipant.session_id == session_id,
        ChatParticipant.participant_id == participant_id,
    )
    return (await session.execute(stmt)).first() is not None


async def remove_participant(session: AsyncSession, session_id: str, participant_id: str) -> bool:
    stmt = (
        delete(ChatParticipant)
        .where(
            ChatParticipant.session_id == session_id,
            ChatParticipant.participant_id == participant_id,
        )
        .returning(ChatParticipant.participant_id)
    )
    return (await session.execute(stmt)).first() is not None


async def list_sessions(
    session: AsyncSession,
    *,
    participant_id: str | None,
    status: str | None,
    before_id: str | None,
    limit: int,
) -> Sequence[ChatSession]:
    """Newest first (ids sort by creation); `participant_id` None: every session."""
    stmt = select(ChatSession)
    if participant_id is not None:
        mine = select(ChatParticipant.session_id).where(
            ChatParticipant.participant_id == participant_id
        )
        stmt = stmt.where(ChatSession.id.in_(mine))
    if status is not None:
        stmt = stmt.where(ChatSession.status == status)
    if before_id is not None:
        stmt = stmt.where(ChatSession.id < before_id)
    stmt = stmt.order_by(ChatSession.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def take_seq(
    session: AsyncSession, session_id: str, now: datetime, *, any_status: bool = False
) -> int | None:
    """The session's next message number, or None when it is not active (with
    `any_status`: when it does not exist). The update
    locks the session's row until the transaction ends: writers to one session
    take their numbers, and commit, one after the other, and a rollback gives
    the number back (no gaps)."""
    where = [ChatSession.id == session_id]
    if not any_status:
        where.append(ChatSession.status == "active")
    stmt = (
        update(ChatSession)
        .where(*where)
        .values(last_seq=ChatSession.last_seq + 1, updated_at=now)
        .returning(ChatSession.last_seq)
        .execution_options(synchronize_session=False)
    )
    value = (await session.execute(stmt)).scalar_one_or_none()
    return None if value is None else int(value)


async def last_seq(session: AsyncSession, session_id: str) -> int | None:
    stmt = select(ChatSession.last_seq).where(ChatSession.id == session_id)
    value = (await session.execute(stmt)).scalar_one_or_none()
    return None if value is None else int(value)


async def messages_after(
    session: AsyncSession, session_id: str, after_seq: int, limit: int
) -> Sequence[ChatMessage]:
    """Oldest first: messages with a seq above `after_seq`."""
    stmt = (
        select(ChatMessage)
        .where(ChatMessage.session_id == session_id, ChatMessage.seq > after_seq)
        .order_by(ChatMessage.seq)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def messages_before(
    session: AsyncSession, session_id: str, before_seq: int | None, limit: int
) -> Sequence[ChatMessage]:
    """Newest first: messages with a seq below `before_seq` (None: the latest)."""
    stmt = select(ChatMessage).where(ChatMessage.session_id == session_id)
    if before_seq is not None:
        stmt = stmt.where(ChatMessage.seq < before_seq)
    stmt = stmt.order_by(ChatMessage.seq.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def get_chat_task(
    session: AsyncSession, task_id: str, *, for_update: bool = False
) -> ChatTask | None:
    stmt = select(ChatTask).where(ChatTask.task_id == task_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def open_chat_tasks(session: AsyncSession, session_id: str) -> dict[str, str]:
    """The session's `chat` tasks still to answer: task id -> asking message id."""
    stmt = select(ChatTask.task_id, ChatTask.message_id).where(
        ChatTask.session_id == session_id, ChatTask.done.is_(False)
    )
    return {row.task_id: row.message_id for row in (await session.execute(stmt)).all()}


async def get_message(session: AsyncSession, message_id: str) -> ChatMessage | None:
    return await session.get(ChatMessage, message_id)


async def sessions_with_file(session: AsyncSession, message_ids: Sequence[str]) -> Sequence[str]:
    """The sessions of those messages."""
    if not message_ids:
        return []
    stmt = select(ChatMessage.session_id).where(ChatMessage.id.in_(message_ids)).distinct()
    return (await session.execute(stmt)).scalars().all()

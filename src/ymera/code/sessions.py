"""Edit sessions: groups of edits, and one diff of everything a session changed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.auth.principal import Principal
from ymera.code import repository
from ymera.code.edits import FileChange, SessionClosed, SessionNotFound, build_diff
from ymera.code.service import actor_of, get_workspace
from ymera.events.outbox import record_event
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.code import EditFile, EditSession


def _session_event(session: AsyncSession, es: EditSession, kind: str, actor: str) -> None:
    record_event(
        session,
        type=f"edit_session.{kind}",
        resource_type="edit_session",
        resource_id=es.id,
        data={"workspace_id": es.workspace_id, "title": es.title},
        actor=actor,
    )


async def create_session(
    session: AsyncSession,
    *,
    principal: Principal,
    workspace_id: str,
    title: str,
    description: str,
    now: datetime,
) -> EditSession:
    ws = await get_workspace(session, workspace_id=workspace_id)
    actor = await actor_of(session, principal)
    es = EditSession(
        id=new_id(),
        workspace_id=ws.id,
        title=title,
        description=description,
        status="OPEN",
        created_by_type=actor.type,
        created_by_id=actor.id,
        created_at=now,
        updated_at=now,
    )
    session.add(es)
    await session.flush()
    _session_event(session, es, "created", principal.id)
    return es


async def get_session(session: AsyncSession, *, workspace_id: str, session_id: str) -> EditSession:
    await get_workspace(session, workspace_id=workspace_id)
    es = await repository.get_session(session, workspace_id, session_id)
    if es is None:
        raise SessionNotFound(f"No session {session_id} in this workspace")
    return es


async def list_sessions(
    session: AsyncSession, *, workspace_id: str, cursor: str | None, limit: int
) -> Slice[EditSession]:
    await get_workspace(session, workspace_id=workspace_id)
    after = decode_cursor(cursor)
    before_id = str(after["id"]) if after and "id" in after else None
    rows = list(
        await repository.list_sessions(session, workspace_id, before_id=before_id, limit=limit + 1)
    )
    next_cursor = encode_cursor({"id": rows[limit - 1].id}) if len(rows) > limit else None
    return Slice(rows[:limit], next_cursor)


async def close_session(
    session: AsyncSession,
    *,
    principal: Principal,
    workspace_id: str,
    session_id: str,
    now: datetime,
) -> EditSession:
    es = await get_session(session, workspace_id=workspace_id, session_id=session_id)
    if es.status == "CLOSED":
        raise SessionClosed(f"Session {session_id} is already closed", session_id=session_id)
    es.status = "CLOSED"
    es.closed_at = now
    es.updated_at = now
    _session_event(session, es, "closed", principal.id)
    return es


async def session_diff(session: AsyncSession, *, workspace_id: str, session_id: str) -> str:
    """What the session's applied edits changed, as one diff: per file, from its
    content before the first of them to its content after the last."""
    es = await get_session(session, workspace_id=workspace_id, session_id=session_id)
    edits = await repository.applied_edits_of_session(session, es.id)
    rows = await repository.edit_files(session, [e.id for e in edits])
    by_edit: dict[str, list[EditFile]] = {}
    for row in rows:
        by_edit.setdefault(row.edit_id, []).append(row)
    first: dict[str, bytes | None] = {}
    last: dict[str, bytes | None] = {}
    for edit in edits:
        for row in by_edit.get(edit.id, []):
            first.setdefault(row.path, row.before)
            last[row.path] = row.after
    changes = [FileChange(p, first[p], last[p]) for p in first if first[p] != last[p]]
    return build_diff(changes)

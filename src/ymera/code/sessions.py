"""Edit sessions: groups of edits, and one diff of everything a session changed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.auth.principal import Principal
from ymera.code import repository
from ymera.code.access import AgentNotAllowed, TaskGrant, refuse_agent
from ymera.code.edits import FileChange, SessionClosed, SessionNotFound, build_diff
from ymera.code.service import Actor, actor_of, get_workspace
from ymera.events.outbox import record_event
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.code import EditFile, EditSession, Workspace


def _session_event(session: AsyncSession, es: EditSession, kind: str, actor: str) -> None:
    record_event(
        session,
        type=f"edit_session.{kind}",
        resource_type="edit_session",
        resource_id=es.id,
        data={"workspace_id": es.workspace_id, "title": es.title, "task_id": es.task_id},
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
    refuse_agent(principal, "open edit sessions (an agent's edits go to its task's session)")
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


async def task_session(
    session: AsyncSession,
    *,
    ws: Workspace,
    grant: TaskGrant,
    actor: Actor,
    requested: str | None,
    now: datetime,
) -> str:
    """The id of the edit session of the task an agent acts for: opened (titled
    after the task) with its first edit, reused after. ``ws`` is locked by the
    caller, so two first edits cannot both open one. A closed session takes no
    more edits (409 ``session_closed``)."""
    es = await repository.get_task_session(session, ws.id, grant.task_id)
    if requested is not None and (es is None or es.id != requested):
        raise AgentNotAllowed(
            "An agent's edits go to its task's session: omit session_id",
            session_id=requested,
            task_id=grant.task_id,
        )
    if es is None:
        es = EditSession(
            id=new_id(),
            workspace_id=ws.id,
            title=f"{grant.task_type} (task {grant.task_id})"[:200],
            description=f"Edits by agent {actor.name} for task {grant.task_id}",
            status="OPEN",
            created_by_type=actor.type,
            created_by_id=actor.id,
            task_id=grant.task_id,
            created_at=now,
            updated_at=now,
        )
        session.add(es)
        await session.flush()
        _session_event(session, es, "created", actor.principal_id)
    elif es.status != "OPEN":
        raise SessionClosed(
            f"The session of task {grant.task_id} is closed: it takes no more edits",
            session_id=es.id,
        )
    return es.id


async def get_session(session: AsyncSession, *, workspace_id: str, session_id: str) -> EditSession:
    await get_workspace(session, workspace_id=workspace_id)
    es = await repository.get_session(session, workspace_id, session_id)
    if es is None:
        raise SessionNotFound(f"No session {session_id} in this workspace")
    return es


async def list_sessions(
    session: AsyncSession,
    *,
    workspace_id: str,
    task_id: str | None = None,
    cursor: str | None,
    limit: int,
) -> Slice[EditSession]:
    await get_workspace(session, workspace_id=workspace_id)
    after = decode_cursor(cursor)
    before_id = str(after["id"]) if after and "id" in after else None
    rows = list(
        await repository.list_sessions(
            session, workspace_id, before_id=before_id, limit=limit + 1, task_id=task_id
        )
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
    refuse_agent(principal, "close edit sessions")
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

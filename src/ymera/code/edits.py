"""Edit records: what every change to a workspace's files leaves behind.

Every change is an :class:`~ymera.models.code.Edit` with, per touched file, its
hashes and its contents before and after (so it can be applied later, reverted,
undone and exported), its diff, and the analysis of what it introduced. Direct
changes are born APPLIED; ``propose`` records a PROPOSED edit and writes nothing.
The review flow lives in :mod:`ymera.code.review`, the ways to make changes in
:mod:`ymera.code.edit_service`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.code import analysis, diffs, repository
from ymera.code.bulk import Change, Delete, Write
from ymera.code.errors import EditorError
from ymera.code.schemas import EditMeta
from ymera.code.service import Actor, analysis_options
from ymera.code.status import EditStatus, check_transition
from ymera.code.storage import WorkspaceStore
from ymera.code.textfile import decode_bytes, sha256_hex
from ymera.errors import Conflict, NotFound
from ymera.events.outbox import record_event
from ymera.kit.ids import new_id
from ymera.models.code import Edit, EditFile, Workspace

S = EditStatus


class EditNotFound(NotFound):
    code = "edit_not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class SessionClosed(Conflict):
    code = "session_closed"


@dataclass(frozen=True)
class FileChange:
    """One file's bytes before and after (None: absent on that side)."""

    path: str
    before: bytes | None
    after: bytes | None


# --- diffs, summaries, analysis -----------------------------------------------------------


def decode_text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return decode_bytes(data, max_bytes=len(data)).text
    except EditorError:
        return None


def build_diff(changes: Sequence[FileChange]) -> str:
    """A git-style diff of ``changes`` (``git apply`` accepts it)."""
    items: list[diffs.FileChange] = []
    for c in changes:
        before, after = decode_text(c.before), decode_text(c.after)
        if (c.before is not None and before is None) or (c.after is not None and after is None):
            continue  # not text: no textual diff
        items.append(
            (
                None if c.before is None else c.path,
                None if c.after is None else c.path,
                before,
                after,
            )
        )
    return diffs.make_patch(items)


def summaries(changes: Sequence[FileChange]) -> list[dict[str, Any]]:
    out = []
    for c in changes:
        change = "added" if c.before is None else "deleted" if c.after is None else "modified"
        out.append(
            {
                "path": c.path,
                "change": change,
                "base_hash": content_hash(c.before),
                "result_hash": content_hash(c.after),
            }
        )
    return out


def content_hash(data: bytes | None) -> str | None:
    return None if data is None else sha256_hex(data)


def _analysable(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in analysis.LANGUAGES


def _finding(f: analysis.Finding) -> dict[str, Any]:
    found = asdict(f)
    found.pop("line_text", None)
    return found


async def analyze_change(
    store: WorkspaceStore, changes: Sequence[FileChange]
) -> dict[str, Any] | None:
    """The problems the change introduced and fixed, from the touched files' texts
    before and after (findings matched on the offending line's text)."""
    if not store.settings.analyze_edits:
        return None
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for c in changes:
        if not _analysable(c.path):
            continue
        if (text := decode_text(c.before)) is not None:
            before[c.path] = text
        if (text := decode_text(c.after)) is not None:
            after[c.path] = text
    touched = len(set(before) | set(after))
    limit = store.settings.analysis_max_files
    if touched == 0 or touched > limit:
        note = "no analysable file" if touched == 0 else f"more than {limit} files"
        return {"ran": False, "note": note, "introduced": [], "fixed": []}
    options = analysis_options(store)
    old, new = await asyncio.gather(
        asyncio.to_thread(analysis.analyze_texts, before, options=options),
        asyncio.to_thread(analysis.analyze_texts, after, options=options),
    )
    return {
        "ran": True,
        "note": "",
        "introduced": [_finding(f) for f in analysis.introduced(old, new)],
        "fixed": [_finding(f) for f in analysis.introduced(new, old)],
        "skipped": dict(new.skipped),
        "tool_errors": [*old.tool_errors, *new.tool_errors],
    }


# --- recording ----------------------------------------------------------------------------


def edit_event(
    session: AsyncSession, edit: Edit, kind: str, actor: str | None, **data: Any
) -> None:
    record_event(
        session,
        type=f"edit.{kind}",
        resource_type="edit",
        resource_id=edit.id,
        data={
            "workspace_id": edit.workspace_id,
            "session_id": edit.session_id,
            "number": edit.number,
            "type": edit.type,
            "source": edit.source,
            "status": edit.status,
            "files": [f["path"] for f in edit.files[:100]],
            **data,
        },
        actor=actor,
    )


async def check_open_session(session: AsyncSession, ws: Workspace, session_id: str | None) -> None:
    if session_id is None:
        return
    found = await repository.get_session(session, ws.id, session_id)
    if found is None:
        raise SessionNotFound(f"No session {session_id} in this workspace")
    if found.status != "OPEN":
        raise SessionClosed(f"Session {session_id} is closed", session_id=session_id)


def file_rows(edit_id: str, changes: Sequence[FileChange]) -> list[EditFile]:
    return [
        EditFile(
            edit_id=edit_id,
            position=i,
            path=c.path,
            base_hash=content_hash(c.before),
            result_hash=content_hash(c.after),
            before=c.before,
            after=c.after,
        )
        for i, c in enumerate(changes)
    ]


async def record_edit(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    ws: Workspace,
    actor: Actor,
    meta: EditMeta,
    source: str,
    operation: str | None,
    changes: Sequence[FileChange],
    now: datetime,
    reverts: Edit | None = None,
) -> Edit:
    status = S.PROPOSED if meta.propose else S.APPLIED
    ws.edit_count += 1
    ws.updated_at = now
    edit = Edit(
        id=new_id(),
        workspace_id=ws.id,
        session_id=meta.session_id,
        number=ws.edit_count,
        type=meta.type.value,
        priority=meta.priority,
        title=meta.title,
        description=meta.description,
        source=source,
        operation=operation,
        status=status.value,
        author_type=actor.type,
        author_id=actor.id,
        author_name=actor.name[:100],
        files=summaries(changes),
        diff=build_diff(changes),
        analysis=await analyze_change(store, changes),
        rebased=False,
        reverts_edit_id=reverts.id if reverts else None,
        review_comment="",
        created_at=now,
        updated_at=now,
    )
    if status == S.APPLIED:
        mark_applied(ws, edit, actor, now)
    session.add(edit)
    await session.flush()
    session.add_all(file_rows(edit.id, changes))
    await session.flush()
    edit_event(session, edit, "proposed" if status == S.PROPOSED else "applied", actor.principal_id)
    return edit


def mark_applied(ws: Workspace, edit: Edit, actor: Actor, now: datetime) -> None:
    ws.apply_seq += 1
    edit.applied_seq = ws.apply_seq
    edit.applied_at = now
    edit.applied_by = actor.principal_id


def writes(changes: Sequence[FileChange]) -> list[Change]:
    return [Delete(c.path) if c.after is None else Write(c.path, c.after) for c in changes]


def mark_reverted(session: AsyncSession, edit: Edit, by: Edit, actor: Actor, now: datetime) -> None:
    check_transition(S(edit.status), S.REVERTED)
    edit.status = S.REVERTED.value
    edit.reverted_by_edit_id = by.id
    edit.updated_at = now
    edit_event(session, edit, "reverted", actor.principal_id, reverted_by=by.id)


async def edit_for_write(session: AsyncSession, ws: Workspace, edit_id: str) -> Edit:
    edit = await repository.get_edit(session, ws.id, edit_id, for_update=True)
    if edit is None:
        raise EditNotFound(f"No edit {edit_id} in this workspace")
    return edit

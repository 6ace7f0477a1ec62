"""The review flow: approve or reject a proposal, apply it, revert an applied edit.

PROPOSED -> APPROVED (``edits:review``; never by the edit's own author, unless
they are an admin) or REJECTED (the author may: that withdraws it); APPROVED ->
APPLIED, refused with 409 ``conflict`` and the current hash when a file changed
since the edit was made, unless ``allow_rebase`` and its diff still applies;
APPLIED -> REVERTED (409 ``conflict`` when a file changed since it was applied).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.code import diffs, repository
from ymera.code.access import TaskGrant, refuse_direct_write
from ymera.code.bulk import BulkWriter
from ymera.code.edits import (
    FileChange,
    analyze_change,
    build_diff,
    edit_event,
    edit_for_write,
    file_rows,
    mark_applied,
    mark_reverted,
    record_edit,
    summaries,
    writes,
)
from ymera.code.errors import EditConflict, EditorError
from ymera.code.schemas import EditMeta, EditType
from ymera.code.service import Actor, actor_of, get_for_write
from ymera.code.status import EditStatus, check_transition
from ymera.code.storage import WorkspaceStore, file_hash, guard
from ymera.errors import Forbidden
from ymera.models.code import Edit, EditFile

S = EditStatus


class SelfApproval(Forbidden):
    code = "self_approval"


def _is_author(edit: Edit, actor: Actor) -> bool:
    return edit.author_type == actor.type and edit.author_id == actor.id


async def review(
    session: AsyncSession,
    *,
    principal: Principal,
    workspace_id: str,
    edit_id: str,
    approve: bool,
    comment: str,
    now: datetime,
) -> Edit:
    """Approve or reject a proposal. An author may reject (withdraw) their own edit
    but not approve it, unless they are an admin (``system:admin``)."""
    ws = await get_for_write(session, workspace_id=workspace_id)
    edit = await edit_for_write(session, ws, edit_id)
    actor = await actor_of(session, principal)
    target = S.APPROVED if approve else S.REJECTED
    check_transition(S(edit.status), target)
    if approve and _is_author(edit, actor) and not principal.can(Permission.SYSTEM_ADMIN):
        raise SelfApproval(
            "An edit's author may not approve it; another reviewer must (or an admin)"
        )
    edit.status = target.value
    edit.reviewed_at = now
    edit.reviewed_by = principal.id
    edit.review_comment = comment
    edit.updated_at = now
    edit_event(session, edit, "approved" if approve else "rejected", principal.id, comment=comment)
    return edit


def _apply_files(
    root: Path,
    journal: Path,
    files: Sequence[EditFile],
    diff: str,
    *,
    allow_rebase: bool,
    fuzz: int,
    max_bytes: int,
) -> list[FileChange] | None:
    """Write an edit's contents; None when applied as recorded, else the rebased changes."""
    stale: list[tuple[EditFile, str | None]] = []
    for f in files:
        target, _ = guard(root, f.path)
        current = file_hash(target)
        if current != f.base_hash:
            stale.append((f, current))
    if not stale:
        changes = [FileChange(f.path, f.before, f.after) for f in files]
        BulkWriter(root, journal).apply(writes(changes))
        return None
    first, current = stale[0]
    listing = [{"path": f.path, "base_hash": f.base_hash, "current_hash": h} for f, h in stale]
    if not allow_rebase:
        raise EditConflict(
            f"{first.path} changed since the edit was made; view it again, or apply with "
            "allow_rebase",
            current_hash=current,
            path=first.path,
            base_hash=first.base_hash,
            files=listing,
        )
    try:
        report = diffs.apply_patch(root, diff, fuzz=fuzz, journal_dir=journal, max_bytes=max_bytes)
    except EditorError as exc:
        raise EditConflict(
            f"{first.path} changed since the edit was made and the edit does not apply "
            f"cleanly to the current version: {exc.message}",
            current_hash=current,
            path=first.path,
            base_hash=first.base_hash,
            files=listing,
            reason=exc.code,
        ) from exc
    return [FileChange(p, report.before[p], report.after[p]) for p in report.after]


async def apply_edit(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    principal: Principal,
    workspace_id: str,
    edit_id: str,
    allow_rebase: bool,
    fuzz: int,
    now: datetime,
) -> Edit:
    """Write an APPROVED edit (all-or-nothing); 409 ``conflict`` with the current hash
    when a file changed since it was made, unless ``allow_rebase`` and it still applies."""
    ws = await get_for_write(session, workspace_id=workspace_id)
    edit = await edit_for_write(session, ws, edit_id)
    check_transition(S(edit.status), S.APPLIED)
    actor = await actor_of(session, principal)
    files = await repository.edit_files(session, [edit.id])
    root = store.existing_root(ws.id)
    async with store.writing(ws.id):
        rebased = await asyncio.to_thread(
            _apply_files,
            root,
            store.journal(ws.id),
            files,
            edit.diff,
            allow_rebase=allow_rebase,
            fuzz=fuzz,
            max_bytes=store.settings.max_file_bytes,
        )
    if rebased is not None:
        await repository.replace_edit_files(session, edit.id, file_rows(edit.id, rebased))
        edit.files = summaries(rebased)
        edit.diff = build_diff(rebased)
        edit.analysis = await analyze_change(store, rebased)
        edit.rebased = True
    edit.status = S.APPLIED.value
    edit.updated_at = now
    mark_applied(ws, edit, actor, now)
    edit_event(session, edit, "applied", principal.id, rebased=edit.rebased)
    return edit


def _revert_files(root: Path, journal: Path, files: Sequence[EditFile]) -> list[FileChange]:
    for f in files:
        target, _ = guard(root, f.path)
        current = file_hash(target)
        if current != f.result_hash:
            raise EditConflict(
                f"{f.path} changed since the edit was applied; reverting would discard that",
                current_hash=current,
                path=f.path,
                expected_hash=f.result_hash,
            )
    changes = [FileChange(f.path, f.after, f.before) for f in files]
    BulkWriter(root, journal).apply(writes(changes))
    return changes


async def revert_edit(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    principal: Principal,
    workspace_id: str,
    edit_id: str,
    title: str,
    now: datetime,
    grant: TaskGrant | None = None,
) -> Edit:
    """Undo an APPLIED edit's changes (409 ``conflict`` if its files changed since);
    the edit becomes REVERTED and the revert is recorded as an edit of its own. An
    agent in a "propose" task may not (its changes go through review)."""
    refuse_direct_write(grant, "revert edits")
    ws = await get_for_write(session, workspace_id=workspace_id)
    edit = await edit_for_write(session, ws, edit_id)
    check_transition(S(edit.status), S.REVERTED)
    actor = await actor_of(session, principal)
    files = await repository.edit_files(session, [edit.id])
    root = store.existing_root(ws.id)
    async with store.writing(ws.id):
        changes = await asyncio.to_thread(_revert_files, root, store.journal(ws.id), files)
    meta = EditMeta(
        type=EditType(edit.type),
        priority=edit.priority,
        title=title or f"Revert edit #{edit.number}",
        session_id=edit.session_id,
    )
    revert = await record_edit(
        session,
        store=store,
        ws=ws,
        actor=actor,
        meta=meta,
        source="revert",
        operation=None,
        changes=changes,
        now=now,
        reverts=edit,
    )
    mark_reverted(session, edit, revert, actor, now)
    return revert

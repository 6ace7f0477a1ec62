"""Making changes: the text-editor operations (and undo), patches, bulk edits.

Direct changes are written at once under the workspace's write lock, through
:mod:`ymera.code.ops` (one file, atomic), :func:`ymera.code.diffs.apply_patch` or
one :class:`~ymera.code.bulk.BulkWriter` write (many files, all or nothing).
Proposals are computed in memory (:mod:`ymera.code.planner`, or a patch's dry
run) and only recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.auth.principal import Principal
from ymera.code import diffs, ops, repository, sessions
from ymera.code.access import TaskGrant
from ymera.code.bulk import BulkWriter
from ymera.code.edits import (
    EditNotFound,
    FileChange,
    check_open_session,
    content_hash,
    edit_event,
    mark_reverted,
    record_edit,
    writes,
)
from ymera.code.errors import EditConflict, EditorError, NoOp, NothingToUndo
from ymera.code.planner import Plan, Planned
from ymera.code.schemas import (
    BulkCreate,
    BulkDelete,
    BulkIn,
    BulkInsert,
    BulkOperation,
    BulkStrReplace,
    BulkWrite,
    CreateCommand,
    EditMeta,
    EditorCommand,
    EditType,
    InsertCommand,
    PatchIn,
    StrReplaceCommand,
    UndoCommand,
    ViewCommand,
)
from ymera.code.service import Actor, actor_of, get_for_write, get_workspace, view_in
from ymera.code.status import EditStatus, check_transition
from ymera.code.storage import WorkspaceStore, file_hash, guard
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.code import Edit, Workspace

S = EditStatus
M = TypeVar("M", bound=EditMeta | UndoCommand)


@dataclass(frozen=True)
class EditorResult:
    command: str
    path: str
    output: str
    sha256: str | None = None
    total_lines: int | None = None
    entries: list[str] | None = None
    edit: Edit | None = None


@dataclass(frozen=True)
class PatchResult:
    report: diffs.ApplyReport
    edit: Edit | None


@dataclass(frozen=True)
class BulkResult:
    dry_run: bool
    changes: list[FileChange]
    edit: Edit | None


def _planned(items: Sequence[Planned]) -> list[FileChange]:
    return [FileChange(p.path, p.before, p.after) for p in items]


def _check_hashes(root: Path, expected: dict[str, str] | None) -> None:
    for path, want in (expected or {}).items():
        target, _ = guard(root, path)
        current = file_hash(target)
        if current != want:
            raise EditConflict(
                f"{path} changed since it was read (its hash is not the expected one)",
                current_hash=current,
                path=path,
                expected_hash=want,
            )


async def _for_task(
    session: AsyncSession,
    ws: Workspace,
    grant: TaskGrant | None,
    actor: Actor,
    meta: M,
    now: datetime,
) -> M:
    """``meta`` as the change records it: for an agent acting for a task, in the
    task's session, and proposed when the task's mode is "propose"."""
    if grant is None:
        await check_open_session(session, ws, meta.session_id)
        return meta
    session_id = await sessions.task_session(
        session, ws=ws, grant=grant, actor=actor, requested=meta.session_id, now=now
    )
    if isinstance(meta, EditMeta):
        return meta.model_copy(
            update={"session_id": session_id, "propose": meta.propose or grant.propose}
        )
    return meta.model_copy(update={"session_id": session_id})


# --- the text-editor operations ------------------------------------------------------------


async def editor(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    principal: Principal,
    workspace_id: str,
    command: EditorCommand,
    now: datetime,
    grant: TaskGrant | None = None,
) -> EditorResult:
    """Run one text-editor command (view, create, str_replace, insert, undo).

    ``grant``: the task an agent acts for (its edits join the task's session, and
    are proposed in a "propose" task, where ``undo`` withdraws its last proposal)."""
    if isinstance(command, ViewCommand):
        ws = await get_workspace(session, workspace_id=workspace_id)
        result = await view_in(store, ws, command.path, command.view_range)
        return EditorResult(
            "view",
            command.path,
            result.content,
            result.sha256,
            result.total_lines if result.kind == "file" else None,
            result.entries if result.kind == "directory" else None,
        )
    ws = await get_for_write(session, workspace_id=workspace_id)
    actor = await actor_of(session, principal)
    command = await _for_task(session, ws, grant, actor, command, now)
    if isinstance(command, UndoCommand):
        if grant is not None and grant.propose:
            return await _withdraw(
                session, store=store, ws=ws, actor=actor, command=command, now=now
            )
        return await _undo(session, store=store, ws=ws, actor=actor, command=command, now=now)
    root = store.existing_root(ws.id)
    max_bytes = store.settings.max_file_bytes
    cmd: CreateCommand | StrReplaceCommand | InsertCommand = command

    def run() -> FileChange:
        _, key = guard(root, cmd.path)
        if cmd.propose:
            plan = Plan(lambda p: guard(root, p), max_bytes=max_bytes)
            _plan_command(plan, cmd)
            return _planned(plan.changes())[0]
        command = cmd
        if isinstance(command, CreateCommand):
            result = ops.create(root, command.path, command.file_text, max_bytes=max_bytes)
        elif isinstance(command, StrReplaceCommand):
            result = ops.str_replace(
                root,
                command.path,
                command.old_str,
                command.new_str,
                expected_hash=command.expected_hash,
                max_bytes=max_bytes,
            )
        else:
            result = ops.insert(
                root,
                command.path,
                command.insert_line,
                command.insert_text,
                expected_hash=command.expected_hash,
                max_bytes=max_bytes,
            )
        return FileChange(key, result.before_bytes, result.after_bytes)

    async with store.writing(ws.id):
        change = await asyncio.to_thread(run)
    edit = await record_edit(
        session,
        store=store,
        ws=ws,
        actor=actor,
        meta=command,
        source="operation",
        operation=command.command,
        changes=[change],
        now=now,
    )
    return EditorResult(
        command.command,
        command.path,
        _message(command, edit),
        content_hash(change.after),
        edit=edit,
    )


def _plan_command(plan: Plan, command: CreateCommand | StrReplaceCommand | InsertCommand) -> None:
    if isinstance(command, CreateCommand):
        plan.create(command.path, command.file_text)
    elif isinstance(command, StrReplaceCommand):
        plan.str_replace(
            command.path, command.old_str, command.new_str, expected_hash=command.expected_hash
        )
    else:
        plan.insert(
            command.path,
            command.insert_line,
            command.insert_text,
            expected_hash=command.expected_hash,
        )


def _message(command: CreateCommand | StrReplaceCommand | InsertCommand, edit: Edit) -> str:
    if edit.status == S.PROPOSED:
        return f"Proposed edit #{edit.number} for review; nothing was written."
    if isinstance(command, CreateCommand):
        return f"Created {command.path}."
    if isinstance(command, StrReplaceCommand):
        return f"Replaced the one occurrence of old_str in {command.path}."
    return f"Inserted the text after line {command.insert_line} of {command.path}."


async def _undo(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    ws: Workspace,
    actor: Actor,
    command: UndoCommand,
    now: datetime,
) -> EditorResult:
    """Restore the file as it was before the latest editor operation on it that is
    still applied; that edit becomes REVERTED and the undo is an edit of its own."""
    root = store.existing_root(ws.id)
    _, key = await asyncio.to_thread(guard, root, command.path)
    depth = store.settings.undo_depth
    last = await repository.last_undoable(session, ws.id, key, depth=depth)
    if last is None:
        raise NothingToUndo(
            f"No edit of {command.path} to undo (the history keeps its last {depth} "
            "editor operations)",
            details={"path": command.path, "depth": depth},
        )
    (ef,) = [f for f in await repository.edit_files(session, [last.id]) if f.path == key]

    def run() -> FileChange:
        target, _ = guard(root, key)
        current = file_hash(target)
        if current != ef.result_hash:
            raise EditConflict(
                f"{command.path} changed since edit #{last.number}; undo would discard that",
                current_hash=current,
                path=command.path,
                edit_id=last.id,
            )
        result = ops.UndoHistory.from_list(root, [(key, ef.before)], depth=1).undo(key)
        return FileChange(key, result.before_bytes, result.after_bytes)

    async with store.writing(ws.id):
        change = await asyncio.to_thread(run)
    meta = EditMeta(
        type=EditType(last.type),
        priority=last.priority,
        title=f"Undo edit #{last.number}",
        session_id=command.session_id or last.session_id,
    )
    undo = await record_edit(
        session,
        store=store,
        ws=ws,
        actor=actor,
        meta=meta,
        source="undo",
        operation=None,
        changes=[change],
        now=now,
        reverts=last,
    )
    mark_reverted(session, last, undo, actor, now)
    return EditorResult(
        "undo",
        command.path,
        f"Restored {command.path} to its content before edit #{last.number}.",
        content_hash(change.after),
        edit=undo,
    )


async def _withdraw(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    ws: Workspace,
    actor: Actor,
    command: UndoCommand,
    now: datetime,
) -> EditorResult:
    """Undo for an agent whose changes are proposals: its latest editor operation on
    the file still PROPOSED in its task's session is withdrawn (REJECTED)."""
    root = store.existing_root(ws.id)
    target, key = await asyncio.to_thread(guard, root, command.path)
    assert command.session_id is not None
    edit = await repository.last_proposal(
        session, ws.id, session_id=command.session_id, author_id=actor.id, path=key
    )
    if edit is None:
        raise NothingToUndo(
            f"No proposed edit of {command.path} to withdraw", details={"path": command.path}
        )
    check_transition(S(edit.status), S.REJECTED)
    comment = "withdrawn by its author (undo)"
    edit.status = S.REJECTED.value
    edit.reviewed_at = now
    edit.reviewed_by = actor.principal_id
    edit.review_comment = comment
    edit.updated_at = now
    edit_event(session, edit, "rejected", actor.principal_id, comment=comment)
    return EditorResult(
        "undo",
        command.path,
        f"Withdrew proposed edit #{edit.number}; nothing was written.",
        await asyncio.to_thread(file_hash, target),
        edit=edit,
    )


# --- patches and bulk edits ---------------------------------------------------------------


async def patch(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    principal: Principal,
    workspace_id: str,
    data: PatchIn,
    now: datetime,
    grant: TaskGrant | None = None,
) -> PatchResult:
    """Apply a unified diff strictly and all-or-nothing (or check it: ``dry_run``;
    or record it for review: ``propose``, always in a "propose" task's ``grant``)."""
    ws = await get_for_write(session, workspace_id=workspace_id)
    actor = await actor_of(session, principal)
    data = await _for_task(session, ws, None if data.dry_run else grant, actor, data, now)
    root = store.existing_root(ws.id)
    write = not (data.dry_run or data.propose)

    def run() -> diffs.ApplyReport:
        for fp in diffs.parse_patch(data.patch):
            for path in (fp.old_path, fp.new_path):
                if path is not None:
                    guard(root, path)
        _check_hashes(root, data.expected_hashes)
        return diffs.apply_patch(
            root,
            data.patch,
            dry_run=not write,
            fuzz=data.fuzz,
            journal_dir=store.journal(ws.id),
            max_bytes=store.settings.max_file_bytes,
        )

    async with store.writing(ws.id):
        report = await asyncio.to_thread(run)
    changes = [FileChange(p, report.before[p], report.after[p]) for p in report.after]
    if data.dry_run:
        return PatchResult(report, None)
    if not changes:
        raise NoOp("The patch changes nothing")
    edit = await record_edit(
        session,
        store=store,
        ws=ws,
        actor=actor,
        meta=data,
        source="patch",
        operation=None,
        changes=changes,
        now=now,
    )
    return PatchResult(report, edit)


def _plan_bulk(plan: Plan, op: BulkOperation) -> None:
    if isinstance(op, BulkCreate):
        plan.create(op.path, op.file_text)
    elif isinstance(op, BulkWrite):
        plan.write(op.path, op.file_text)
    elif isinstance(op, BulkStrReplace):
        plan.str_replace(op.path, op.old_str, op.new_str)
    elif isinstance(op, BulkInsert):
        plan.insert(op.path, op.insert_line, op.insert_text)
    else:
        assert isinstance(op, BulkDelete)
        plan.delete(op.path)


async def bulk(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    principal: Principal,
    workspace_id: str,
    data: BulkIn,
    now: datetime,
    grant: TaskGrant | None = None,
) -> BulkResult:
    """Many operations over many files: all checked in memory first, then written in
    one journaled all-or-nothing write (or only checked, or only proposed: always in
    a "propose" task's ``grant``)."""
    ws = await get_for_write(session, workspace_id=workspace_id)
    actor = await actor_of(session, principal)
    data = await _for_task(session, ws, None if data.dry_run else grant, actor, data, now)
    root = store.existing_root(ws.id)
    write = not (data.dry_run or data.propose)

    def run() -> list[FileChange]:
        _check_hashes(root, data.expected_hashes)
        plan = Plan(lambda p: guard(root, p), max_bytes=store.settings.max_file_bytes)
        for i, op in enumerate(data.operations):
            try:
                _plan_bulk(plan, op)
            except EditorError as exc:
                exc.message = f"operation {i} ({op.command} {op.path}): {exc.message}"
                exc.args = (exc.message,)
                exc.details["operation"] = i
                raise
        changes = _planned(plan.changes())
        if not changes:
            raise NoOp("The operations change nothing")
        if write:
            BulkWriter(root, store.journal(ws.id)).apply(writes(changes))
        return changes

    async with store.writing(ws.id):
        changes = await asyncio.to_thread(run)
    if data.dry_run:
        return BulkResult(True, changes, None)
    edit = await record_edit(
        session,
        store=store,
        ws=ws,
        actor=actor,
        meta=data,
        source="bulk",
        operation=None,
        changes=changes,
        now=now,
    )
    return BulkResult(False, changes, edit)


# --- reading edits ------------------------------------------------------------------------


async def get_edit(session: AsyncSession, *, workspace_id: str, edit_id: str) -> Edit:
    await get_workspace(session, workspace_id=workspace_id)
    edit = await repository.get_edit(session, workspace_id, edit_id)
    if edit is None:
        raise EditNotFound(f"No edit {edit_id} in this workspace")
    return edit


async def list_edits(
    session: AsyncSession,
    *,
    workspace_id: str,
    statuses: Sequence[str],
    session_id: str | None,
    cursor: str | None,
    limit: int,
) -> Slice[Edit]:
    await get_workspace(session, workspace_id=workspace_id)
    after = decode_cursor(cursor)
    before = after.get("n") if after else None
    if before is not None and not isinstance(before, int):
        before = None
    rows = list(
        await repository.list_edits(
            session,
            workspace_id,
            statuses=statuses,
            session_id=session_id,
            before_number=before,
            limit=limit + 1,
        )
    )
    next_cursor = encode_cursor({"n": rows[limit - 1].number}) if len(rows) > limit else None
    return Slice(rows[:limit], next_cursor)

"""`/api/v1/workspaces/{id}/...`: the text editor, patches, bulk edits, edits and their
review, edit sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from ymera.auth.dependencies import require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.code import edit_service, review, sessions
from ymera.code.edits import summaries
from ymera.code.endpoints import DIFF_RESPONSES, DiffResponse, ReadCaller, Store, WriteCaller
from ymera.code.schemas import (
    ApplyIn,
    BulkIn,
    BulkOut,
    EditFileOut,
    EditorCommand,
    EditorOut,
    EditOut,
    FileReportOut,
    PatchIn,
    PatchOut,
    RevertIn,
    ReviewIn,
    SessionCreate,
    SessionOut,
    edit_out,
    session_out,
)
from ymera.code.status import EditStatus
from ymera.kit.pagination import Page
from ymera.state import DbSession, State

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}", tags=["edits"])

Review = Annotated[Principal, Depends(require(Permission.EDITS_REVIEW))]


@router.post("/editor", response_model=EditorOut)
async def run_editor_command(
    workspace_id: str,
    body: Annotated[EditorCommand, Body()],
    session: DbSession,
    state: State,
    store: Store,
    caller: WriteCaller,
) -> EditorOut:
    """The text-editor tool: `view`, `create`, `str_replace`, `insert`, `undo`.

    Mutations are written at once and recorded as an APPLIED edit (with `propose:
    true`: a PROPOSED edit, nothing written). Exact errors: `not_found` (404 no such
    file; 422 old_str absent), `ambiguous` (422, `details.lines`), `no_op`,
    `empty_old_string`, `out_of_range` (422), `exists` (409), `outside_workspace` and
    `protected_path` (400), `binary` (415), `too_large` (413), `conflict` (409, with
    `details.current_hash`), `nothing_to_undo` (409). Encoding, line endings (CRLF
    too), final newline and tabs are kept. An agent's edits join its task's session,
    and are proposed when the task's `workspace_mode` is `propose`."""
    result = await edit_service.editor(
        session,
        store=store,
        principal=caller.principal,
        workspace_id=workspace_id,
        command=body,
        now=state.clock.now(),
        grant=caller.grant,
    )
    return EditorOut(
        command=result.command,
        path=result.path,
        output=result.output,
        sha256=result.sha256,
        total_lines=result.total_lines,
        entries=result.entries,
        edit=edit_out(result.edit) if result.edit is not None else None,
    )


@router.post("/patches", response_model=PatchOut)
async def apply_patch(
    workspace_id: str,
    body: PatchIn,
    session: DbSession,
    state: State,
    store: Store,
    caller: WriteCaller,
) -> PatchOut:
    """Apply a unified diff to the workspace, every file or none: strictly (each hunk
    where its header says) unless `fuzz` is given. `dry_run` checks and reports only;
    `propose` records a PROPOSED edit. A hunk that does not apply: 422 `patch_failed`
    naming the file, hunk, expected and found lines; malformed: 422 `invalid_patch`."""
    result = await edit_service.patch(
        session,
        store=store,
        principal=caller.principal,
        workspace_id=workspace_id,
        data=body,
        now=state.clock.now(),
        grant=caller.grant,
    )
    report = result.report
    return PatchOut(
        dry_run=report.dry_run,
        files=[FileReportOut.model_validate(f, from_attributes=True) for f in report.files],
        lines_added=report.lines_added,
        lines_removed=report.lines_removed,
        edit=edit_out(result.edit) if result.edit is not None else None,
    )


@router.post("/bulk", response_model=BulkOut)
async def bulk_edit(
    workspace_id: str,
    body: BulkIn,
    session: DbSession,
    state: State,
    store: Store,
    caller: WriteCaller,
) -> BulkOut:
    """Many operations (`create`, `write`, `str_replace`, `insert`, `delete`) over many
    files, all or nothing: every operation is checked in memory first (a failure names
    its index in `details.operation` and nothing is written), then every file is
    written in one journaled write that a crash cannot leave half done."""
    result = await edit_service.bulk(
        session,
        store=store,
        principal=caller.principal,
        workspace_id=workspace_id,
        data=body,
        now=state.clock.now(),
        grant=caller.grant,
    )
    return BulkOut(
        dry_run=result.dry_run,
        files=[EditFileOut.model_validate(f) for f in summaries(result.changes)],
        edit=edit_out(result.edit) if result.edit is not None else None,
    )


# --- edits -------------------------------------------------------------------------------


@router.get("/edits", response_model=Page[EditOut])
async def list_edits(
    workspace_id: str,
    session: DbSession,
    _: ReadCaller,
    status: Annotated[list[EditStatus] | None, Query(description="Repeatable.")] = None,
    session_id: Annotated[str | None, Query(max_length=36)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[EditOut]:
    """A workspace's edits, newest first (without their diffs; get one edit for it)."""
    page = await edit_service.list_edits(
        session,
        workspace_id=workspace_id,
        statuses=[s.value for s in status or []],
        session_id=session_id,
        cursor=cursor,
        limit=limit,
    )
    return Page[EditOut](
        items=[edit_out(e, with_diff=False) for e in page.items], next_cursor=page.next_cursor
    )


@router.get("/edits/{edit_id}", response_model=EditOut)
async def get_edit(workspace_id: str, edit_id: str, session: DbSession, _: ReadCaller) -> EditOut:
    """One edit with its diff and its analysis (the problems it introduced and fixed)."""
    edit = await edit_service.get_edit(session, workspace_id=workspace_id, edit_id=edit_id)
    return edit_out(edit)


@router.get("/edits/{edit_id}/diff", response_class=DiffResponse, responses=DIFF_RESPONSES)
async def get_edit_diff(
    workspace_id: str, edit_id: str, session: DbSession, _: ReadCaller
) -> DiffResponse:
    """An edit as a unified diff that `git apply` accepts."""
    edit = await edit_service.get_edit(session, workspace_id=workspace_id, edit_id=edit_id)
    return DiffResponse(edit.diff)


@router.post("/edits/{edit_id}/approve", response_model=EditOut)
async def approve_edit(
    workspace_id: str,
    edit_id: str,
    session: DbSession,
    state: State,
    principal: Review,
    body: ReviewIn | None = None,
) -> EditOut:
    """Approve a PROPOSED edit (permission `edits:review`). Its author may not approve
    it (403 `self_approval`) unless they are an admin."""
    edit = await review.review(
        session,
        principal=principal,
        workspace_id=workspace_id,
        edit_id=edit_id,
        approve=True,
        comment=body.comment if body else "",
        now=state.clock.now(),
    )
    return edit_out(edit)


@router.post("/edits/{edit_id}/reject", response_model=EditOut)
async def reject_edit(
    workspace_id: str,
    edit_id: str,
    session: DbSession,
    state: State,
    principal: Review,
    body: ReviewIn | None = None,
) -> EditOut:
    """Reject a PROPOSED or APPROVED edit (permission `edits:review`; its author may,
    to withdraw it)."""
    edit = await review.review(
        session,
        principal=principal,
        workspace_id=workspace_id,
        edit_id=edit_id,
        approve=False,
        comment=body.comment if body else "",
        now=state.clock.now(),
    )
    return edit_out(edit)


@router.post("/edits/{edit_id}/apply", response_model=EditOut)
async def apply_edit(
    workspace_id: str,
    edit_id: str,
    session: DbSession,
    state: State,
    store: Store,
    caller: WriteCaller,
    body: ApplyIn | None = None,
) -> EditOut:
    """Write an APPROVED edit, all files or none. If a file changed since the edit was
    made: 409 `conflict` with `details.current_hash`, unless `allow_rebase` and the
    edit's diff still applies to the current version (the edit is then `rebased`)."""
    options = body or ApplyIn()
    edit = await review.apply_edit(
        session,
        store=store,
        principal=caller.principal,
        workspace_id=workspace_id,
        edit_id=edit_id,
        allow_rebase=options.allow_rebase,
        fuzz=options.fuzz,
        now=state.clock.now(),
    )
    return edit_out(edit)


@router.post("/edits/{edit_id}/revert", response_model=EditOut)
async def revert_edit(
    workspace_id: str,
    edit_id: str,
    session: DbSession,
    state: State,
    store: Store,
    caller: WriteCaller,
    body: RevertIn | None = None,
) -> EditOut:
    """Revert an APPLIED edit by writing its files back (409 `conflict` if any changed
    since). Returns the revert, itself an APPLIED edit; the original becomes REVERTED."""
    revert = await review.revert_edit(
        session,
        store=store,
        principal=caller.principal,
        workspace_id=workspace_id,
        edit_id=edit_id,
        title=body.title if body else "",
        now=state.clock.now(),
        grant=caller.grant,
    )
    return edit_out(revert)


# --- sessions ------------------------------------------------------------------------------


@router.post("/sessions", response_model=SessionOut, status_code=201, tags=["edit sessions"])
async def create_session(
    workspace_id: str, body: SessionCreate, session: DbSession, state: State, caller: WriteCaller
) -> SessionOut:
    """Open an edit session: edits made with its `session_id` are grouped under it.
    (An agent's edits go to its task's session, opened with its first edit.)"""
    es = await sessions.create_session(
        session,
        principal=caller.principal,
        workspace_id=workspace_id,
        title=body.title,
        description=body.description,
        now=state.clock.now(),
    )
    return session_out(es)


@router.get("/sessions", response_model=Page[SessionOut], tags=["edit sessions"])
async def list_sessions(
    workspace_id: str,
    session: DbSession,
    _: ReadCaller,
    task_id: Annotated[
        str | None, Query(max_length=36, description="Only the session of this task.")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[SessionOut]:
    """A workspace's edit sessions, newest first."""
    page = await sessions.list_sessions(
        session, workspace_id=workspace_id, task_id=task_id, cursor=cursor, limit=limit
    )
    return Page[SessionOut](
        items=[session_out(es) for es in page.items], next_cursor=page.next_cursor
    )


@router.get("/sessions/{session_id}", response_model=SessionOut, tags=["edit sessions"])
async def get_session(
    workspace_id: str, session_id: str, session: DbSession, _: ReadCaller
) -> SessionOut:
    """One edit session."""
    es = await sessions.get_session(session, workspace_id=workspace_id, session_id=session_id)
    return session_out(es)


@router.post("/sessions/{session_id}/close", response_model=SessionOut, tags=["edit sessions"])
async def close_session(
    workspace_id: str, session_id: str, session: DbSession, state: State, caller: WriteCaller
) -> SessionOut:
    """Close a session: no edit may join it any more (409 `session_closed`)."""
    es = await sessions.close_session(
        session,
        principal=caller.principal,
        workspace_id=workspace_id,
        session_id=session_id,
        now=state.clock.now(),
    )
    return session_out(es)


@router.get(
    "/sessions/{session_id}/diff",
    response_class=DiffResponse,
    responses=DIFF_RESPONSES,
    tags=["edit sessions"],
)
async def get_session_diff(
    workspace_id: str, session_id: str, session: DbSession, _: ReadCaller
) -> DiffResponse:
    """What the session's applied edits changed, as one unified diff (`git apply`
    accepts it): each file from before the first of them to after the last."""
    text = await sessions.session_diff(session, workspace_id=workspace_id, session_id=session_id)
    return DiffResponse(text)

"""`/api/v1/workspaces`: workspaces, their files, analysis and git."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response, status

from ymera.auth.dependencies import require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.code import access, service
from ymera.code.access import TASK_HEADER, TaskGrant
from ymera.code.schemas import (
    MAX_PATH,
    AnalysisOut,
    ArchiveWorkspaceOut,
    CommitIn,
    CommitOut,
    FindingOut,
    GitStatusEntryOut,
    GitStatusOut,
    TreeEntryOut,
    TreeOut,
    ViewOut,
    WorkspaceCreate,
    WorkspaceOut,
    workspace_out,
)
from ymera.code.storage import WorkspaceStore
from ymera.files import service as files_service
from ymera.kit.pagination import Page
from ymera.state import DbSession, State

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])

Read = Annotated[Principal, Depends(require(Permission.WORKSPACES_READ))]
Write = Annotated[Principal, Depends(require(Permission.WORKSPACES_WRITE))]
TaskHeader = Annotated[
    str | None,
    Header(
        alias=TASK_HEADER,
        max_length=36,
        description="For agents: the task they act for, which must carry this workspace "
        "(default: the one assigned last). Ignored for users.",
    ),
]


@dataclass(frozen=True)
class Caller:
    """Who calls a workspace's route, and, for an agent, the task it acts for."""

    principal: Principal
    grant: TaskGrant | None


async def _caller(
    session: DbSession, principal: Principal, workspace_id: str, task: str | None
) -> Caller:
    grant = await access.grant_for(
        session, principal=principal, workspace_id=workspace_id, task_id=task
    )
    return Caller(principal, grant)


async def _reader(
    workspace_id: str, session: DbSession, principal: Read, task: TaskHeader = None
) -> Caller:
    """workspaces:read, and for an agent a task it holds on this workspace (403
    ``workspace_not_assigned`` otherwise)."""
    return await _caller(session, principal, workspace_id, task)


async def _writer(
    workspace_id: str, session: DbSession, principal: Write, task: TaskHeader = None
) -> Caller:
    """workspaces:write, and for an agent a task it holds on this workspace (403
    ``workspace_not_assigned`` otherwise)."""
    return await _caller(session, principal, workspace_id, task)


ReadCaller = Annotated[Caller, Depends(_reader)]
WriteCaller = Annotated[Caller, Depends(_writer)]

# The archive route accepts bodies up to this; the real limit is the setting
# YMERA_CODE__MAX_UPLOAD_BYTES, enforced while the body streams in.
UPLOAD_CEILING = 1 << 40
DIFF_MEDIA_TYPE = "text/x-diff"


class DiffResponse(Response):
    """A unified diff as text (``git apply`` reads it as is)."""

    media_type = DIFF_MEDIA_TYPE


DIFF_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "A unified diff (empty when there is no change).",
        "content": {DIFF_MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}


async def get_store(state: State) -> WorkspaceStore:
    """The workspaces' storage (made by the app's lifespan; made here if missing)."""
    store = state.extras.get("code")
    if not isinstance(store, WorkspaceStore):
        store = state.extras["code"] = WorkspaceStore.from_settings(state.settings)
    return store


Store = Annotated[WorkspaceStore, Depends(get_store)]
PathQuery = Annotated[
    str, Query(max_length=MAX_PATH, description="Relative to the workspace root; empty = root.")
]


@router.post("", response_model=WorkspaceOut, status_code=201)
async def create_workspace(
    body: Annotated[WorkspaceCreate, Body()],
    session: DbSession,
    state: State,
    store: Store,
    principal: Write,
) -> WorkspaceOut:
    """Create a workspace: empty (`source: empty`, optionally `init_git`), or a clone of
    a local git repository (`source: git`, `git_path` under a directory allowed by
    `YMERA_CODE__GIT_ALLOWED_ROOTS`; 403 `git_import_disabled` when none is).
    URLs are never cloned. To start from a zip or tar archive, use `POST /archive`."""
    ws = await service.create_workspace(
        session, store=store, principal=principal, data=body, now=state.clock.now()
    )
    return workspace_out(ws)


@router.post(
    "/archive",
    response_model=ArchiveWorkspaceOut,
    status_code=201,
    max_body_size=UPLOAD_CEILING,
    openapi_extra={
        "requestBody": {
            "required": False,
            "description": "The archive's bytes (zip, tar, tar.gz, tar.bz2 or tar.xz; told "
            "apart by content, not by name or Content-Type); none with `file_id`.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def create_workspace_from_archive(
    request: Request,
    session: DbSession,
    state: State,
    store: Store,
    principal: Write,
    name: Annotated[str, Query(min_length=1, max_length=200)],
    description: Annotated[str, Query(max_length=2000)] = "",
    init_git: Annotated[
        bool, Query(description="Make it a git repository with the files as first commit.")
    ] = False,
    file_id: Annotated[
        str | None,
        Query(
            max_length=36,
            description="Unpack this uploaded file (Files API) instead of the request body; "
            "it is then attached to the workspace. Unknown or unreadable: 422 `unknown_file`.",
        ),
    ] = None,
) -> ArchiveWorkspaceOut:
    """Create a workspace from an uploaded archive (the request body).

    Refused, with nothing kept: bodies over `YMERA_CODE__MAX_UPLOAD_BYTES` (413
    `upload_too_large`), unknown formats (415 `unsupported_archive`), corrupt archives
    (422 `invalid_archive`), members that could escape the workspace or are devices
    (422 `unsafe_archive`), and archives past the unpacked-size, member-count or
    compression-ratio limits (413 `archive_too_large`). A `.git` directory in the
    archive is dropped."""
    if file_id is not None:
        ws, result = await service.create_from_file(
            session,
            store=store,
            storage=files_service.storage_of(state),
            principal=principal,
            name=name,
            description=description,
            init_git=init_git,
            file_id=file_id,
            now=state.clock.now(),
        )
        return _archive_out(ws, result)
    length = request.headers.get("content-length")
    ws, result = await service.create_from_archive(
        session,
        store=store,
        principal=principal,
        name=name,
        description=description,
        init_git=init_git,
        body=request.stream(),
        declared_size=int(length) if length and length.isdigit() else None,
        now=state.clock.now(),
    )
    return _archive_out(ws, result)


def _archive_out(ws: Any, result: Any) -> ArchiveWorkspaceOut:
    return ArchiveWorkspaceOut(
        workspace=workspace_out(ws),
        format=result.format,
        files=result.files,
        directories=result.directories,
        symlinks=result.symlinks,
        total_bytes=result.total_bytes,
    )


@router.get("", response_model=Page[WorkspaceOut])
async def list_workspaces(
    session: DbSession,
    principal: Read,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[WorkspaceOut]:
    """List workspaces, newest first, with cursor pagination (an agent: those of the
    tasks it holds)."""
    page = await service.list_workspaces(session, principal=principal, cursor=cursor, limit=limit)
    return Page[WorkspaceOut](
        items=[workspace_out(ws) for ws in page.items], next_cursor=page.next_cursor
    )


@router.get("/{workspace_id}", response_model=WorkspaceOut)
async def get_workspace(workspace_id: str, session: DbSession, _: ReadCaller) -> WorkspaceOut:
    """Get one workspace."""
    return workspace_out(await service.get_workspace(session, workspace_id=workspace_id))


@router.delete("/{workspace_id}", status_code=204)
async def delete_workspace(
    workspace_id: str, session: DbSession, store: Store, caller: WriteCaller
) -> Response:
    """Delete a workspace with its files, edits and sessions (its owner or an admin)."""
    await service.delete_workspace(
        session, store=store, principal=caller.principal, workspace_id=workspace_id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{workspace_id}/tree", response_model=TreeOut)
async def get_tree(
    workspace_id: str, session: DbSession, store: Store, _: ReadCaller, path: PathQuery = ""
) -> TreeOut:
    """Every file, directory and symlink below `path` (the root by default), files with
    their size and sha256; `.git` is left out, symlinks are listed but not followed.
    The listing stops at `YMERA_CODE__MAX_TREE_ENTRIES` (`truncated: true`)."""
    entries, truncated = await service.tree(
        session, store=store, workspace_id=workspace_id, path=path
    )
    return TreeOut(
        entries=[TreeEntryOut.model_validate(e, from_attributes=True) for e in entries],
        truncated=truncated,
    )


@router.get("/{workspace_id}/view", response_model=ViewOut)
async def view_file(
    workspace_id: str,
    session: DbSession,
    store: Store,
    _: ReadCaller,
    path: PathQuery = "",
    start: Annotated[int | None, Query(ge=1, le=100_000_000)] = None,
    end: Annotated[int | None, Query(ge=-1, le=100_000_000)] = None,
) -> ViewOut:
    """The editor's `view` for readers: a file's numbered lines (`start`..`end`, 1-based,
    `end=-1` to the end) with its sha256, or a directory two levels deep."""
    view_range = None if start is None and end is None else [start or 1, end or -1]
    result = await service.view(
        session, store=store, workspace_id=workspace_id, path=path, view_range=view_range
    )
    return ViewOut(
        path=result.path,
        kind=result.kind,
        content=result.content,
        total_lines=result.total_lines,
        sha256=result.sha256,
        entries=result.entries,
    )


@router.get("/{workspace_id}/analysis", response_model=AnalysisOut)
async def analyze_workspace(
    workspace_id: str,
    session: DbSession,
    store: Store,
    _: ReadCaller,
    path: Annotated[
        list[str] | None,
        Query(max_length=MAX_PATH, description="Repeatable; default: every known file."),
    ] = None,
) -> AnalysisOut:
    """Static analysis of the workspace: syntax errors (Python, JavaScript, TypeScript,
    Go, Rust, Java, JSON, YAML, TOML), lint (ruff) and complexity (radon), with
    per-file metrics and the files skipped and why."""
    report = await service.analyze(session, store=store, workspace_id=workspace_id, paths=path)
    return AnalysisOut(
        findings=[FindingOut.model_validate(f, from_attributes=True) for f in report.findings],
        counts=report.counts(),
        metrics={k: asdict(m) for k, m in report.metrics.items()},
        skipped=report.skipped,
        tool_errors=report.tool_errors,
    )


@router.get("/{workspace_id}/git/status", response_model=GitStatusOut, tags=["git"])
async def git_status(
    workspace_id: str, session: DbSession, store: Store, _: ReadCaller
) -> GitStatusOut:
    """A git workspace's branch, HEAD and changed files (409 `not_a_git_workspace`)."""
    result = await service.git_status(session, store=store, workspace_id=workspace_id)
    return GitStatusOut(
        branch=result.branch,
        head=result.head,
        clean=result.clean,
        entries=[GitStatusEntryOut.model_validate(e, from_attributes=True) for e in result.entries],
    )


@router.get(
    "/{workspace_id}/git/diff",
    response_class=DiffResponse,
    responses=DIFF_RESPONSES,
    tags=["git"],
)
async def git_diff(
    workspace_id: str, session: DbSession, store: Store, _: ReadCaller
) -> DiffResponse:
    """Every uncommitted change of a git workspace, untracked files included, as one
    patch (`git apply` accepts it)."""
    text = await service.git_diff(session, store=store, workspace_id=workspace_id)
    return DiffResponse(text)


@router.post("/{workspace_id}/git/commit", response_model=CommitOut, tags=["git"])
async def git_commit(
    workspace_id: str, body: CommitIn, session: DbSession, store: Store, caller: WriteCaller
) -> CommitOut:
    """Commit the workspace's changes, or only the files of `edit_ids` (APPLIED edits),
    with `message` and an author (default: the caller). Hooks never run. The committed
    edits record the commit's sha. 409 `nothing_to_commit` when nothing changed."""
    result = await service.commit(
        session,
        store=store,
        principal=caller.principal,
        workspace_id=workspace_id,
        message=body.message,
        author_name=body.author_name,
        author_email=body.author_email,
        edit_ids=body.edit_ids,
        grant=caller.grant,
    )
    return CommitOut(
        sha=result.sha,
        message=result.message,
        author_name=result.author_name,
        author_email=result.author_email,
        edit_ids=result.edit_ids,
    )

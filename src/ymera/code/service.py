"""Workspaces: create (empty, archive, git), list, delete, file tree, view, analysis, git.

Files are blocking I/O: every file-system and git call runs in a thread. Writes
hold the workspace's row lock (``get_for_write``) and its write lock
(:meth:`WorkspaceStore.writing`); see :mod:`ymera.code.storage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import unicodedata
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import service as agents_service
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.code import analysis, git, ops, repository
from ymera.code.access import (
    TaskGrant,
    assigned_workspace_ids,
    refuse_agent,
    refuse_direct_write,
)
from ymera.code.archive import ArchiveLimits, ExtractResult, extract_archive
from ymera.code.schemas import EmptyWorkspaceCreate, GitWorkspaceCreate
from ymera.code.status import EditStatus
from ymera.code.storage import GIT_DIR, TreeEntry, WorkspaceStore, guard, list_tree
from ymera.errors import Conflict, Forbidden, NotFound, YmeraError
from ymera.events.outbox import record_event
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.code import Edit, Workspace

_UPLOAD_CHUNK = 1024 * 1024


class WorkspaceNotFound(NotFound):
    code = "workspace_not_found"


class NotGitWorkspace(Conflict):
    code = "not_a_git_workspace"


class UploadTooLarge(YmeraError):
    status_code = 413
    code = "upload_too_large"


class EditNotCommittable(Conflict):
    code = "edit_not_applied"


@dataclass(frozen=True)
class Actor:
    """Who did something: a user or an agent, as edits and events record it."""

    type: str  # "user" | "agent"
    id: str
    name: str
    principal_id: str


async def actor_of(session: AsyncSession, principal: Principal) -> Actor:
    if principal.kind == "agent" and principal.agent_id:
        name = principal.agent_id
        with contextlib.suppress(NotFound):
            agent = await agents_service.get_agent(session, agent_id=principal.agent_id)
            name = agent.name
        return Actor("agent", principal.agent_id, name, principal.id)
    return Actor("user", principal.user_id, principal.username or principal.user_id, principal.id)


def _event(session: AsyncSession, ws: Workspace, kind: str, actor: str | None, **data: Any) -> None:
    record_event(
        session,
        type=f"workspace.{kind}",
        resource_type="workspace",
        resource_id=ws.id,
        data={"name": ws.name, **data},
        actor=actor,
    )


# --- loading ------------------------------------------------------------------------------


async def get_workspace(session: AsyncSession, *, workspace_id: str) -> Workspace:
    ws = await repository.get_workspace(session, workspace_id)
    if ws is None:
        raise WorkspaceNotFound(f"No workspace {workspace_id}")
    return ws


async def get_for_write(session: AsyncSession, *, workspace_id: str) -> Workspace:
    """The workspace, its row locked until commit (writers to it take turns)."""
    ws = await repository.get_workspace(session, workspace_id, for_update=True)
    if ws is None:
        raise WorkspaceNotFound(f"No workspace {workspace_id}")
    return ws


async def existing_workspace_ids(session: AsyncSession, *, ids: Collection[str]) -> set[str]:
    """Which of ``ids`` are workspaces (for tasks that carry one); they stay until
    the caller's transaction ends."""
    return await repository.existing_workspace_ids(session, ids)


# --- create, list, delete --------------------------------------------------------------------


def _new_workspace(
    *, ws_id: str, name: str, description: str, source: str, principal: Principal, now: datetime
) -> Workspace:
    return Workspace(
        id=ws_id,
        name=name,
        description=description,
        source=source,
        is_git=False,
        git_origin=None,
        owner_id=principal.user_id if principal.kind == "user" else None,
        created_by=principal.id,
        edit_count=0,
        apply_seq=0,
        created_at=now,
        updated_at=now,
    )


async def _save(
    session: AsyncSession, ws: Workspace, store: WorkspaceStore, principal: Principal, **data: Any
) -> Workspace:
    session.add(ws)
    try:
        await session.flush()
    except BaseException:
        await asyncio.to_thread(store.remove, ws.id)
        raise
    _event(session, ws, "created", principal.id, source=ws.source, is_git=ws.is_git, **data)
    return ws


def _initial_commit(root: Path, principal: Principal, timeout: float) -> None:
    git.init(root, timeout=timeout)
    name = principal.username or principal.user_id
    with contextlib.suppress(git.NothingToCommit):
        git.commit(
            root,
            message="Initial import",
            author_name=name,
            author_email=default_email(name),
            paths=None,
            timeout=timeout,
        )


def _identity(text: str) -> str:
    """``text`` as git accepts it in an identity: no angle brackets or control
    characters; empty when nothing but punctuation and spaces is left."""
    kept = "".join(c for c in text if c not in "<>" and unicodedata.category(c)[0] != "C")
    return kept.strip() if any(c.isalnum() for c in kept) else ""


def default_email(name: str) -> str:
    local = "".join(c if c.isalnum() or c in "._-" else "-" for c in name) or "ymera"
    return f"{local}@ymera.local"


async def create_workspace(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    principal: Principal,
    data: EmptyWorkspaceCreate | GitWorkspaceCreate,
    now: datetime,
) -> Workspace:
    """An empty workspace (optionally ``git init``), or a clone of a local repository."""
    refuse_agent(principal, "create workspaces")
    settings = store.settings
    source = ref = None
    if isinstance(data, GitWorkspaceCreate):
        source = git.check_source(data.git_path, settings.allowed_git_roots())
        ref = data.git_ref
    ws = _new_workspace(
        ws_id=new_id(),
        name=data.name,
        description=data.description,
        source=data.source,
        principal=principal,
        now=now,
    )
    root = store.root(ws.id)

    def build() -> None:
        store.prepare(ws.id)
        try:
            if source is not None:
                git.clone(source, root, ref=ref, timeout=settings.git_timeout)
            else:
                root.mkdir()
                if isinstance(data, EmptyWorkspaceCreate) and data.init_git:
                    git.init(root, timeout=settings.git_timeout)
        except BaseException:
            store.remove(ws.id)
            raise

    await asyncio.to_thread(build)
    if source is not None:
        ws.is_git, ws.git_origin = True, str(source)
    elif isinstance(data, EmptyWorkspaceCreate):
        ws.is_git = data.init_git
    return await _save(session, ws, store, principal)


async def create_from_file(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    storage: Any,
    principal: Principal,
    name: str,
    description: str,
    init_git: bool,
    file_id: str,
    now: datetime,
) -> tuple[Workspace, ExtractResult]:
    """A workspace unpacked from an archive already uploaded to the Files API (by id:
    422 `unknown_file` unless the principal may read it); the file is then attached
    to the workspace (its metadata's `attached_to`)."""
    from ymera.files import service as files_service

    await files_service.check_references(session, principal=principal, file_ids=[file_id], now=now)
    download = await files_service.open_content(
        session, storage=storage, principal=principal, file_id=file_id, range_header=None, now=now
    )
    ws, result = await create_from_archive(
        session,
        store=store,
        principal=principal,
        name=name,
        description=description,
        init_git=init_git,
        body=download.chunks,
        declared_size=download.file.size,
        now=now,
    )
    await files_service.attach(
        session, file_ids=[file_id], resource_type="workspace", resource_id=ws.id, now=now
    )
    return ws, result


async def create_from_archive(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    principal: Principal,
    name: str,
    description: str,
    init_git: bool,
    body: AsyncIterator[bytes],
    declared_size: int | None,
    now: datetime,
) -> tuple[Workspace, ExtractResult]:
    """A workspace unpacked from a zip or tar archive streamed in ``body``.

    The upload goes to a temporary file (refused past ``max_upload_bytes``, before
    any parsing); the archive is unpacked all-or-nothing. A ``.git`` directory in
    the archive is dropped: its configuration could run commands.
    """
    refuse_agent(principal, "create workspaces")
    settings = store.settings
    limit = settings.max_upload_bytes
    if declared_size is not None and declared_size > limit:
        raise _too_large(declared_size, limit)
    ws = _new_workspace(
        ws_id=new_id(),
        name=name,
        description=description,
        source="archive",
        principal=principal,
        now=now,
    )
    directory = await asyncio.to_thread(store.prepare, ws.id)
    upload = directory / "upload.tmp"
    try:
        await _receive(body, upload, limit)
        limits = ArchiveLimits(
            max_total_bytes=settings.archive_max_total_bytes,
            max_members=settings.archive_max_members,
            max_ratio=settings.archive_max_ratio,
        )
        root = store.root(ws.id)

        def unpack() -> ExtractResult:
            result = extract_archive(upload, root, limits=limits)
            upload.unlink()
            dot_git = root / GIT_DIR
            if dot_git.is_symlink() or dot_git.is_file():
                dot_git.unlink()
            elif dot_git.exists():
                shutil.rmtree(dot_git)
            if init_git:
                _initial_commit(root, principal, settings.git_timeout)
            return result

        result = await asyncio.to_thread(unpack)
    except BaseException:
        await asyncio.to_thread(store.remove, ws.id)
        raise
    ws.is_git = init_git
    await _save(session, ws, store, principal, files=result.files, bytes=result.total_bytes)
    return ws, result


def _too_large(size: int, limit: int) -> UploadTooLarge:
    return UploadTooLarge(
        f"The upload is {size} bytes or more; the limit is {limit}", size=size, limit=limit
    )


async def _receive(body: AsyncIterator[bytes], dest: Path, limit: int) -> None:
    received = 0
    buffer: list[bytes] = []
    buffered = 0
    with await asyncio.to_thread(open, dest, "wb") as out:
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                raise _too_large(received, limit)
            buffer.append(chunk)
            buffered += len(chunk)
            if buffered >= _UPLOAD_CHUNK:
                await asyncio.to_thread(out.write, b"".join(buffer))
                buffer, buffered = [], 0
        if buffer:
            await asyncio.to_thread(out.write, b"".join(buffer))


async def list_workspaces(
    session: AsyncSession, *, principal: Principal, cursor: str | None, limit: int
) -> Slice[Workspace]:
    """Newest first; an agent sees only the workspaces of the tasks it holds."""
    only = None
    if principal.kind == "agent":
        only = await assigned_workspace_ids(session, principal=principal)
    after = decode_cursor(cursor)
    before_id = str(after["id"]) if after and "id" in after else None
    rows = list(
        await repository.list_workspaces(session, before_id=before_id, limit=limit + 1, only=only)
    )
    next_cursor = encode_cursor({"id": rows[limit - 1].id}) if len(rows) > limit else None
    return Slice(rows[:limit], next_cursor)


async def delete_workspace(
    session: AsyncSession, *, store: WorkspaceStore, principal: Principal, workspace_id: str
) -> None:
    """Delete a workspace, its edits and its files (its owner, or an admin)."""
    refuse_agent(principal, "delete workspaces")
    ws = await get_for_write(session, workspace_id=workspace_id)
    if ws.owner_id != principal.user_id and not principal.can(Permission.SYSTEM_ADMIN):
        raise Forbidden("Only the workspace's owner or an admin may delete it", code="not_owner")
    await repository.delete_workspace(session, ws.id)
    await session.flush()
    _event(session, ws, "deleted", principal.id)
    async with store.writing(ws.id):
        await asyncio.to_thread(store.remove, ws.id)
    store.forget(ws.id)


# --- files: tree, view, analysis ---------------------------------------------------------------


async def tree(
    session: AsyncSession, *, store: WorkspaceStore, workspace_id: str, path: str
) -> tuple[list[TreeEntry], bool]:
    ws = await get_workspace(session, workspace_id=workspace_id)
    root = store.existing_root(ws.id)
    return await asyncio.to_thread(list_tree, root, path, limit=store.settings.max_tree_entries)


async def view(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    workspace_id: str,
    path: str,
    view_range: list[int] | None,
) -> ops.ViewResult:
    ws = await get_workspace(session, workspace_id=workspace_id)
    return await view_in(store, ws, path, view_range)


async def view_in(
    store: WorkspaceStore, ws: Workspace, path: str, view_range: list[int] | None
) -> ops.ViewResult:
    root = store.existing_root(ws.id)

    def run() -> ops.ViewResult:
        guard(root, path)
        result = ops.view(root, path, view_range, max_bytes=store.settings.max_file_bytes)
        if result.kind == "directory":
            entries = [e for e in result.entries if not e.startswith(GIT_DIR + "/")]
            return ops.ViewResult(result.path, "directory", "\n".join(entries), entries=entries)
        return result

    return await asyncio.to_thread(run)


def analysis_options(store: WorkspaceStore) -> analysis.AnalysisOptions:
    return analysis.AnalysisOptions(
        max_file_bytes=store.settings.max_file_bytes,
        ruff_timeout=store.settings.analysis_timeout,
    )


async def analyze(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    workspace_id: str,
    paths: list[str] | None,
) -> analysis.AnalysisReport:
    """Syntax, lint and complexity of the workspace's files (or of ``paths``)."""
    ws = await get_workspace(session, workspace_id=workspace_id)
    root = store.existing_root(ws.id)
    return await asyncio.to_thread(analysis.analyze, root, paths, options=analysis_options(store))


# --- git ------------------------------------------------------------------------------------------


def _git_root(store: WorkspaceStore, ws: Workspace) -> Path:
    root = store.existing_root(ws.id)
    if not ws.is_git or not (root / GIT_DIR).is_dir():
        raise NotGitWorkspace("This workspace is not a git repository")
    return root


async def git_status(
    session: AsyncSession, *, store: WorkspaceStore, workspace_id: str
) -> git.Status:
    ws = await get_workspace(session, workspace_id=workspace_id)
    root = _git_root(store, ws)
    return await asyncio.to_thread(git.status, root, timeout=store.settings.git_timeout)


async def git_diff(session: AsyncSession, *, store: WorkspaceStore, workspace_id: str) -> str:
    """Every uncommitted change (untracked files included) as one patch."""
    ws = await get_workspace(session, workspace_id=workspace_id)
    root = _git_root(store, ws)
    scratch = store.dir(ws.id) / f"index.{secrets.token_hex(6)}"
    return await asyncio.to_thread(git.diff, root, scratch, timeout=store.settings.git_timeout)


@dataclass(frozen=True)
class CommitResult:
    sha: str
    message: str
    author_name: str
    author_email: str
    edit_ids: list[str]


async def commit(
    session: AsyncSession,
    *,
    store: WorkspaceStore,
    principal: Principal,
    workspace_id: str,
    message: str,
    author_name: str | None,
    author_email: str | None,
    edit_ids: list[str] | None,
    grant: TaskGrant | None = None,
) -> CommitResult:
    """Commit the workspace's changes (or only the files of ``edit_ids``, which must
    be APPLIED) with ``message`` and an author (default: the caller). Hooks never run.
    An agent in a "propose" task may not."""
    refuse_direct_write(grant, "commit")
    ws = await get_for_write(session, workspace_id=workspace_id)
    root = _git_root(store, ws)
    actor = await actor_of(session, principal)
    name = _identity(author_name or "") or _identity(actor.name) or "ymera"
    email = _identity(author_email or "") or default_email(name)
    edits: list[Edit]
    paths: list[str] | None = None
    if edit_ids is not None:
        unique = list(dict.fromkeys(edit_ids))
        edits = await repository.get_edits(session, ws.id, unique)
        found = {e.id: e for e in edits}
        for edit_id in unique:
            edit = found.get(edit_id)
            if edit is None:
                raise NotFound(f"No edit {edit_id} in this workspace", code="edit_not_found")
            if edit.status != EditStatus.APPLIED:
                raise EditNotCommittable(
                    f"Edit {edit_id} is {edit.status}; only APPLIED edits are committed",
                    edit_id=edit_id,
                    status=edit.status,
                )
        paths = sorted({f["path"] for e in edits for f in e.files})
    else:
        edits = list(await repository.uncommitted_applied_edits(session, ws.id))
    async with store.writing(ws.id):
        sha = await asyncio.to_thread(
            git.commit,
            root,
            message=message,
            author_name=name,
            author_email=email,
            paths=paths,
            timeout=store.settings.git_timeout,
        )
    ids = [e.id for e in edits]
    await repository.set_commit(session, ids, sha)
    _event(
        session,
        ws,
        "committed",
        principal.id,
        sha=sha,
        author=name,
        edits=ids[:100],
        count=len(ids),
    )
    return CommitResult(sha, message, name, email, ids)

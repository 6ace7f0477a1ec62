"""Every query on the code editor tables."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from ymera.models.code import Edit, EditFile, EditSession, Workspace


async def get_workspace(
    session: AsyncSession, workspace_id: str, *, for_update: bool = False
) -> Workspace | None:
    stmt = select(Workspace).where(Workspace.id == workspace_id)
    if for_update:
        # FOR NO KEY UPDATE on PostgreSQL: writers to a workspace take turns, while
        # inserting a task that references it (a KEY SHARE lock) never waits for one.
        stmt = stmt.with_for_update(key_share=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def existing_workspace_ids(session: AsyncSession, ids: Collection[str]) -> set[str]:
    """Which of ``ids`` are workspaces; each found one is locked FOR KEY SHARE (on
    PostgreSQL) until commit, so it cannot be deleted before rows referring to it
    are inserted."""
    stmt = (
        select(Workspace.id)
        .where(Workspace.id.in_(list(ids)))
        .with_for_update(read=True, key_share=True)
    )
    return set((await session.execute(stmt)).scalars().all())


async def list_workspaces(
    session: AsyncSession,
    *,
    before_id: str | None,
    limit: int,
    only: Collection[str] | None = None,
) -> Sequence[Workspace]:
    stmt = select(Workspace)
    if only is not None:
        stmt = stmt.where(Workspace.id.in_(list(only)))
    if before_id is not None:
        stmt = stmt.where(Workspace.id < before_id)
    stmt = stmt.order_by(Workspace.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def delete_workspace(session: AsyncSession, workspace_id: str) -> None:
    await session.execute(delete(Workspace).where(Workspace.id == workspace_id))


# --- sessions -----------------------------------------------------------------------------


async def get_session(
    session: AsyncSession, workspace_id: str, session_id: str
) -> EditSession | None:
    stmt = select(EditSession).where(
        EditSession.id == session_id, EditSession.workspace_id == workspace_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_task_session(
    session: AsyncSession, workspace_id: str, task_id: str
) -> EditSession | None:
    stmt = select(EditSession).where(
        EditSession.task_id == task_id, EditSession.workspace_id == workspace_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_sessions(
    session: AsyncSession,
    workspace_id: str,
    *,
    before_id: str | None,
    limit: int,
    task_id: str | None = None,
) -> Sequence[EditSession]:
    stmt = select(EditSession).where(EditSession.workspace_id == workspace_id)
    if task_id is not None:
        stmt = stmt.where(EditSession.task_id == task_id)
    if before_id is not None:
        stmt = stmt.where(EditSession.id < before_id)
    stmt = stmt.order_by(EditSession.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


# --- edits ----------------------------------------------------------------------------------


async def get_edit(
    session: AsyncSession, workspace_id: str, edit_id: str, *, for_update: bool = False
) -> Edit | None:
    stmt = select(Edit).where(Edit.id == edit_id, Edit.workspace_id == workspace_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_edits(session: AsyncSession, workspace_id: str, ids: Sequence[str]) -> list[Edit]:
    stmt = select(Edit).where(Edit.workspace_id == workspace_id, Edit.id.in_(list(ids)))
    return list((await session.execute(stmt)).scalars().all())


async def list_edits(
    session: AsyncSession,
    workspace_id: str,
    *,
    statuses: Sequence[str] = (),
    session_id: str | None = None,
    before_number: int | None = None,
    limit: int = 50,
) -> Sequence[Edit]:
    stmt = select(Edit).where(Edit.workspace_id == workspace_id)
    if statuses:
        stmt = stmt.where(Edit.status.in_(list(statuses)))
    if session_id is not None:
        stmt = stmt.where(Edit.session_id == session_id)
    if before_number is not None:
        stmt = stmt.where(Edit.number < before_number)
    # Lists never show diffs: do not read them.
    stmt = stmt.options(defer(Edit.diff, raiseload=True)).order_by(Edit.number.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def applied_edits_of_session(session: AsyncSession, session_id: str) -> Sequence[Edit]:
    """The session's edits that were written to disk, in the order they were."""
    stmt = (
        select(Edit)
        .where(Edit.session_id == session_id, Edit.applied_seq.is_not(None))
        .order_by(Edit.applied_seq)
    )
    return (await session.execute(stmt)).scalars().all()


async def uncommitted_applied_edits(session: AsyncSession, workspace_id: str) -> Sequence[Edit]:
    stmt = select(Edit).where(
        Edit.workspace_id == workspace_id,
        Edit.status == "APPLIED",
        Edit.commit_sha.is_(None),
    )
    return (await session.execute(stmt)).scalars().all()


async def set_commit(session: AsyncSession, edit_ids: Sequence[str], sha: str) -> None:
    if edit_ids:
        await session.execute(
            update(Edit).where(Edit.id.in_(list(edit_ids))).values(commit_sha=sha)
        )


async def last_undoable(
    session: AsyncSession, workspace_id: str, path: str, *, depth: int
) -> Edit | None:
    """The latest editor operation on ``path`` that is still applied, among the
    ``depth`` latest applied ones (the file's undo history; older ones, and those
    already undone, are out of reach)."""
    stmt = (
        select(Edit)
        .join(EditFile, EditFile.edit_id == Edit.id)
        .where(
            Edit.workspace_id == workspace_id,
            Edit.status.in_(("APPLIED", "REVERTED")),
            Edit.source == "operation",
            Edit.applied_seq.is_not(None),
            EditFile.path == path,
        )
        .order_by(Edit.applied_seq.desc())
        .limit(depth)
    )
    for edit in (await session.execute(stmt)).scalars():
        if edit.status == "APPLIED":
            return edit
    return None


async def last_proposal(
    session: AsyncSession,
    workspace_id: str,
    *,
    session_id: str,
    author_id: str,
    path: str,
) -> Edit | None:
    """An author's most recent editor operation on ``path`` still PROPOSED in a session."""
    stmt = (
        select(Edit)
        .join(EditFile, EditFile.edit_id == Edit.id)
        .where(
            Edit.workspace_id == workspace_id,
            Edit.session_id == session_id,
            Edit.status == "PROPOSED",
            Edit.source == "operation",
            Edit.author_id == author_id,
            EditFile.path == path,
        )
        .order_by(Edit.number.desc())
        .limit(1)
        .with_for_update(of=Edit)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


# --- edit files -------------------------------------------------------------------------------


async def edit_files(session: AsyncSession, edit_ids: Sequence[str]) -> list[EditFile]:
    """The files (contents included) of ``edit_ids``, by edit then position."""
    if not edit_ids:
        return []
    stmt = (
        select(EditFile)
        .where(EditFile.edit_id.in_(list(edit_ids)))
        .order_by(EditFile.edit_id, EditFile.position)
    )
    return list((await session.execute(stmt)).scalars().all())


def add_edit(session: AsyncSession, edit: Edit, files: Sequence[EditFile]) -> None:
    session.add(edit)
    session.add_all(files)


async def replace_edit_files(
    session: AsyncSession, edit_id: str, files: Sequence[EditFile]
) -> None:
    await session.execute(delete(EditFile).where(EditFile.edit_id == edit_id))
    session.add_all(files)

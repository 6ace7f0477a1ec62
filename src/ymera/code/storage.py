"""Where workspaces live on disk, how writes to one are serialised, and crash recovery.

Layout, for each workspace, under ``<data_dir>/workspaces/<workspace id>/``:

- ``files/``: the workspace's tree (a git workspace has its ``.git`` here);
- ``journal/``: :class:`~ymera.code.bulk.BulkWriter` journals of writes in flight;
- ``lock``: the file lock taken around every write.

Writes to one workspace are serialised three ways: the request's transaction
locks the workspace's row (``SELECT ... FOR UPDATE``; SQLite has one writer), an
``asyncio.Lock`` per workspace orders this process's writers, and ``flock`` on
the ``lock`` file excludes other processes sharing the disk (a replica starting
up and running recovery, say). The file lock is taken without blocking a thread:
it is retried asynchronously.

The ``.git`` directory is not part of the editable workspace: every editor path
is resolved (symlinks included) and refused when it lands in ``.git``, so no
edit can change a repository's configuration or hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from ymera.code import bulk
from ymera.code.errors import EditorError, FileNotFound
from ymera.code.paths import relative_key, resolve_inside
from ymera.config import CodeSettings, Settings
from ymera.errors import Conflict

log = structlog.get_logger("ymera.code")

FILES_DIR = "files"
JOURNAL_DIR = "journal"
LOCK_FILE = "lock"
GIT_DIR = ".git"
_LOCK_POLL = (0.005, 0.25)  # first and longest wait between two flock attempts


class ProtectedPath(EditorError):
    """The path lies in the repository's ``.git`` directory."""

    status_code = 400
    code = "protected_path"


class WorkspaceUnavailable(Conflict):
    """The workspace's directory is missing (deleted outside YMERA, or not restored)."""

    code = "workspace_unavailable"


@dataclass(frozen=True)
class TreeEntry:
    path: str
    type: Literal["file", "directory", "symlink"]
    size: int | None = None
    sha256: str | None = None
    target: str | None = None  # a symlink's target, as stored


def is_protected(key: str) -> bool:
    """Whether ``key`` (a real path relative to the workspace root) is in ``.git``."""
    first = key.split("/", 1)[0]
    return first.lower() == GIT_DIR


def guard(root: Path, path: str) -> tuple[Path, str]:
    """The real path of ``path`` in the workspace and its key (relative POSIX path).

    :class:`~ymera.code.errors.OutsideWorkspace` if it escapes (``..``, absolute,
    a symlink leading out), :class:`ProtectedPath` if it is in ``.git``.
    """
    target = resolve_inside(root, path)
    key = relative_key(root, target)
    if is_protected(key):
        raise ProtectedPath(
            f"{path!r} is in the repository's .git directory, which cannot be edited",
            details={"path": path},
        )
    return target, key


def file_hash(path: Path) -> str | None:
    """sha256 of a regular file (streamed), or None when there is no such file."""
    try:
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return None
            digest = hashlib.sha256()
            for chunk in iter(lambda: fh.read(1024 * 1024), b""):
                digest.update(chunk)
            return digest.hexdigest()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def read_bytes(path: Path) -> bytes | None:
    """A regular file's bytes, or None when there is no such file."""
    try:
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return None
            return fh.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def list_tree(root: Path, start: str, *, limit: int) -> tuple[list[TreeEntry], bool]:
    """Every entry below ``start`` (files with size and sha256), ``.git`` skipped;
    symlinks are listed, never followed. Returns (entries, truncated)."""
    base, key = guard(root, start)
    real_root = root.resolve()
    if not base.is_dir():
        if base.is_file():
            entry = TreeEntry(key, "file", base.stat().st_size, file_hash(base))
            return [entry], False
        raise FileNotFound(f"No such file or directory: {start}", details={"path": start})
    entries: list[TreeEntry] = []
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        dirnames.sort()
        for name in list(dirnames):
            path = here / name
            rel = path.relative_to(real_root).as_posix()
            if is_protected(rel):
                dirnames.remove(name)
                continue
            if path.is_symlink():
                dirnames.remove(name)  # walked neither here nor below
                entries.append(TreeEntry(rel, "symlink", target=os.readlink(path)))
            else:
                entries.append(TreeEntry(rel, "directory"))
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(real_root).as_posix()
            if path.is_symlink():
                entries.append(TreeEntry(rel, "symlink", target=os.readlink(path)))
            elif path.is_file():
                entries.append(TreeEntry(rel, "file", path.stat().st_size, file_hash(path)))
        if len(entries) >= limit:
            return entries[:limit], True
    return entries, False


class WorkspaceStore:
    """The workspaces' directories, their write locks, and recovery at start-up."""

    def __init__(self, base: Path, settings: CodeSettings) -> None:
        self.base = base.resolve()
        self.settings = settings
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkspaceStore:
        return cls(settings.data_dir / "workspaces", settings.code)

    def dir(self, workspace_id: str) -> Path:
        return self.base / workspace_id

    def root(self, workspace_id: str) -> Path:
        return self.base / workspace_id / FILES_DIR

    def journal(self, workspace_id: str) -> Path:
        return self.base / workspace_id / JOURNAL_DIR

    def existing_root(self, workspace_id: str) -> Path:
        root = self.root(workspace_id)
        if not root.is_dir():
            raise WorkspaceUnavailable(
                "The workspace's files are missing on this server", workspace_id=workspace_id
            )
        return root

    def prepare(self, workspace_id: str) -> Path:
        """Create the workspace's directory (not its ``files``); returns it."""
        directory = self.dir(workspace_id)
        directory.mkdir(parents=True, exist_ok=False)
        (directory / LOCK_FILE).touch()
        return directory

    def remove(self, workspace_id: str) -> None:
        shutil.rmtree(self.dir(workspace_id), ignore_errors=True)

    @contextlib.asynccontextmanager
    async def writing(self, workspace_id: str) -> AsyncIterator[None]:
        """Hold the workspace's write lock (this process, then every process)."""
        lock = self._locks.setdefault(workspace_id, asyncio.Lock())
        async with lock:
            fd = await _flock(self.dir(workspace_id) / LOCK_FILE)
            try:
                yield
            finally:
                os.close(fd)  # releases the flock

    def forget(self, workspace_id: str) -> None:
        self._locks.pop(workspace_id, None)

    async def recover_all(self) -> None:
        """Roll back (or finish) every bulk write a crash interrupted, workspace by
        workspace, each under its file lock."""
        if not self.base.is_dir():
            return
        for directory in sorted(await asyncio.to_thread(_with_journals, self.base)):
            fd = await _flock(directory / LOCK_FILE)
            try:
                report = await asyncio.to_thread(
                    bulk.recover, directory / FILES_DIR, directory / JOURNAL_DIR
                )
            except Exception as exc:  # one broken workspace must not stop the server
                log.warning("workspace_recovery_failed", workspace=directory.name, error=repr(exc))
                continue
            finally:
                os.close(fd)
            if report.rolled_back or report.completed or report.skipped:
                log.info(
                    "workspace_recovered",
                    workspace=directory.name,
                    rolled_back=report.rolled_back,
                    completed=report.completed,
                    skipped=report.skipped,
                )


def _with_journals(base: Path) -> list[Path]:
    found = []
    for directory in base.iterdir():
        journal = directory / JOURNAL_DIR
        if (directory / FILES_DIR).is_dir() and journal.is_dir() and any(journal.iterdir()):
            found.append(directory)
    return found


async def _flock(path: Path) -> int:
    """An exclusive flock on ``path`` (created if missing), retried asynchronously."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    wait = _LOCK_POLL[0]
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            await asyncio.sleep(wait)
            wait = min(wait * 2, _LOCK_POLL[1])
    except BaseException:
        os.close(fd)
        raise

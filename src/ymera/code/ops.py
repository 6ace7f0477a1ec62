"""Text-editor operations for agents: view, create, str_replace, insert, undo.

The semantics follow the common agent editing tool (Anthropic's
``str_replace_based_edit_tool``), on top of :mod:`ymera.code.textfile`, so an edit
changes exactly what it says and keeps encoding, line endings, final newline and
tabs. Every path is confined to the workspace by :func:`resolve_inside`; every
write is atomic.

The rules (exact matching, the CRLF convenience of ``str_replace``, whole-line
inserts, refused input) live in :mod:`ymera.code.edit_rules`, shared with the
in-memory :mod:`ymera.code.planner`; this module reads the file, applies the rule
and writes the result.

Each mutating operation returns an :class:`EditResult` (hashes, texts and bytes
before and after, and a git-style diff) so callers can keep undo history
(:class:`UndoHistory`) and show diffs.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ymera.code import edit_rules as rules
from ymera.code.diffs import make_patch
from ymera.code.errors import AlreadyExists, EditorError, NotAFile, NothingToUndo, OutOfRange
from ymera.code.paths import relative_key, resolve_inside
from ymera.code.textfile import (
    DEFAULT_MAX_BYTES,
    TextFile,
    atomic_create,
    atomic_write,
    decode_bytes,
    read_text_file,
    sha256_hex,
    split_lines,
    strip_ending,
)


@dataclass(frozen=True)
class EditResult:
    """One file change. ``None`` on a side: the file did not exist there."""

    path: str
    before_hash: str | None
    after_hash: str | None
    before_text: str | None
    after_text: str | None
    diff: str
    before_bytes: bytes | None = field(default=None, repr=False)
    after_bytes: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ViewResult:
    """A file with numbered lines, or a directory listing (``entries``)."""

    path: str
    kind: Literal["file", "directory"]
    content: str
    total_lines: int = 0  # a file's line count
    sha256: str | None = None  # a file's hash, for a later ``expected_hash``
    entries: list[str] = field(default_factory=list)  # a directory's, "dir/" for dirs


def view(
    root: Path,
    path: str,
    view_range: Sequence[int] | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ViewResult:
    """A file as ``{n:6}\\t{line}`` lines (``view_range`` = [start, end], 1-indexed,
    end -1 = to the end), or a directory's files and dirs two levels deep, hidden
    entries skipped."""
    target = resolve_inside(root, path)
    if target.is_dir():
        if view_range is not None:
            raise OutOfRange("view_range applies to files, not directories")
        entries = _listing(target)
        return ViewResult(path, "directory", "\n".join(entries), entries=entries)
    tf = read_text_file(target, max_bytes=max_bytes, name=path)
    lines = split_lines(tf.text)
    start, end = 1, len(lines)
    if view_range is not None:
        start, end = _check_range(view_range, len(lines))
    numbered = (f"{n:6}\t{strip_ending(lines[n - 1])}" for n in range(start, end + 1))
    return ViewResult(path, "file", "\n".join(numbered), len(lines), tf.sha256)


def _check_range(view_range: Sequence[int], total: int) -> tuple[int, int]:
    details = {"view_range": list(view_range), "total_lines": total}
    if len(view_range) != 2:
        raise OutOfRange("view_range must be [start, end]", details=details)
    start, end = view_range
    if not 1 <= start <= total:
        raise OutOfRange(
            f"view_range start {start} is outside the file's lines 1-{total}", details=details
        )
    if end == -1:
        return start, total
    if not start <= end <= total:
        raise OutOfRange(
            f"view_range end {end} must be -1 or between {start} and {total}", details=details
        )
    return start, end


def _listing(directory: Path, depth: int = 2, prefix: str = "") -> list[str]:
    entries: list[str] = []
    with os.scandir(directory) as scan:
        children = sorted((e for e in scan if not e.name.startswith(".")), key=lambda e: e.name)
    for entry in children:
        # Symlinked directories are listed, never entered: they may lead outside.
        is_dir = entry.is_dir(follow_symlinks=False)
        entries.append(f"{prefix}{entry.name}/" if is_dir else prefix + entry.name)
        if is_dir and depth > 1:
            entries.extend(_listing(Path(entry.path), depth - 1, f"{prefix}{entry.name}/"))
    return entries


def create(root: Path, path: str, text: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> EditResult:
    """Create a new UTF-8 file (parents too); never overwrites (:class:`AlreadyExists`)."""
    rules.check_text(text, field="file_text")
    target = resolve_inside(root, path)
    if os.path.lexists(target):
        raise AlreadyExists(f"{path} already exists", details={"path": path})
    data = rules.new_file(text, path=path, max_bytes=max_bytes).data
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise NotAFile(f"A parent of {path} is not a directory", details={"path": path}) from exc
    if not atomic_create(target, data):
        raise AlreadyExists(f"{path} already exists", details={"path": path})
    return _result(path, None, data)


def str_replace(
    root: Path,
    path: str,
    old: str,
    new: str,
    *,
    expected_hash: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> EditResult:
    """Replace the one occurrence of ``old`` with ``new``."""
    rules.check_replace(old, new)
    target, tf = _read(root, path, expected_hash, max_bytes)
    after = rules.str_replace(tf, old, new, path=path, max_bytes=max_bytes)
    return _write(target, path, tf, after)


def insert(
    root: Path,
    path: str,
    insert_line: int,
    text: str,
    *,
    expected_hash: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> EditResult:
    """Insert ``text`` as whole lines after line ``insert_line`` (0 = at the top)."""
    rules.check_text(text, field="insert_text")
    target, tf = _read(root, path, expected_hash, max_bytes)
    after = rules.insert(tf, insert_line, text, path=path, max_bytes=max_bytes)
    return _write(target, path, tf, after)


def _read(
    root: Path, path: str, expected_hash: str | None, max_bytes: int
) -> tuple[Path, TextFile]:
    target = resolve_inside(root, path)
    tf = read_text_file(target, max_bytes=max_bytes, name=path)
    rules.check_expected_hash(tf, expected_hash, path=path)
    return target, tf


def _write(target: Path, path: str, before: TextFile, after: TextFile) -> EditResult:
    atomic_write(target, after.data)
    return _result(path, before.data, after.data)


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return decode_bytes(data, max_bytes=len(data)).text
    except EditorError:
        return None


def _result(path: str, before: bytes | None, after: bytes | None) -> EditResult:
    before_text, after_text = _text(before), _text(after)
    diff = ""
    readable = (before is None or before_text is not None) and (
        after is None or after_text is not None
    )
    if readable and (before is not None or after is not None):
        old_path = None if before is None else path
        new_path = None if after is None else path
        diff = make_patch([(old_path, new_path, before_text, after_text)])
    return EditResult(
        path=path,
        before_hash=None if before is None else sha256_hex(before),
        after_hash=None if after is None else sha256_hex(after),
        before_text=before_text,
        after_text=after_text,
        diff=diff,
        before_bytes=before,
        after_bytes=after,
    )


class UndoHistory:
    """Per-file stacks of previous contents (bytes; None = the file did not exist),
    at most ``depth`` per file, for one workspace ``root``.

    In memory; :meth:`to_list` / :meth:`from_list` give a plain serialisable form
    (``[(path, bytes | None), ...]``, oldest first) for the service layer to keep.
    """

    def __init__(self, root: Path, *, depth: int = 10) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.root = root
        self.depth = depth
        self._stacks: dict[str, deque[bytes | None]] = {}

    def _key(self, path: str) -> str:
        return relative_key(self.root, resolve_inside(self.root, path))

    def push(self, path: str, previous: bytes | None) -> None:
        key = self._key(path)
        self._stacks.setdefault(key, deque(maxlen=self.depth)).append(previous)

    def record(self, result: EditResult) -> None:
        """Remember the content ``result`` replaced, so :meth:`undo` can restore it."""
        self.push(result.path, result.before_bytes)

    def available(self, path: str) -> int:
        """How many undo steps ``path`` has."""
        return len(self._stacks.get(self._key(path), ()))

    def undo(self, path: str) -> EditResult:
        """Restore ``path``'s previous content (deleting a file that did not exist)."""
        key = self._key(path)
        stack = self._stacks.get(key)
        if not stack:
            raise NothingToUndo(f"No edit of {path} to undo", details={"path": path})
        previous = stack.pop()
        if not stack:
            del self._stacks[key]
        target = resolve_inside(self.root, path)
        current = target.read_bytes() if target.is_file() else None
        if previous is None:
            if current is not None:
                target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, previous)
        return _result(path, current, previous)

    def to_list(self) -> list[tuple[str, bytes | None]]:
        return [(key, content) for key, stack in self._stacks.items() for content in stack]

    @classmethod
    def from_list(
        cls, root: Path, items: Sequence[tuple[str, bytes | None]], *, depth: int = 10
    ) -> UndoHistory:
        history = cls(root, depth=depth)
        for path, content in items:
            history.push(path, content)
        return history

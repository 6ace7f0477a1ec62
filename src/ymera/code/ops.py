"""Text-editor operations for agents: view, create, str_replace, insert, undo.

The semantics follow the common agent editing tool (Anthropic's
``str_replace_based_edit_tool``), on top of :mod:`ymera.code.textfile`, so an edit
changes exactly what it says and keeps encoding, line endings, final newline and
tabs. Every path is confined to the workspace by :func:`resolve_inside`; every
write is atomic.

Line endings:

- Lines are numbered over every line break (CRLF, LF, CR).
- ``str_replace`` matches the exact text. One convenience: when the file uses
  CRLF throughout and the caller's ``old`` holds no ``\\r``, each bare ``\\n`` of
  ``old`` and ``new`` is taken to mean CRLF (agents usually send LF-only text).
  In a file with mixed endings nothing is translated.
- ``insert`` writes the inserted text with the file's (dominant) line ending; its
  text forms whole lines (a single trailing newline does not add a blank line).

Each mutating operation returns an :class:`EditResult` (hashes, texts and bytes
before and after, and a git-style diff) so callers can keep undo history
(:class:`UndoHistory`) and show diffs.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ymera.code.diffs import make_patch
from ymera.code.errors import (
    AlreadyExists,
    Ambiguous,
    EditConflict,
    EditorError,
    EmptyOldString,
    NoOp,
    NotAFile,
    NothingToUndo,
    OldStringNotFound,
    OutOfRange,
    TooLarge,
)
from ymera.code.paths import relative_key, resolve_inside
from ymera.code.textfile import (
    DEFAULT_MAX_BYTES,
    TextFile,
    atomic_create,
    atomic_write,
    count_line_breaks,
    decode_bytes,
    dominant_newline,
    read_text_file,
    sha256_hex,
    split_lines,
    strip_ending,
    to_newline,
    uniform_newline,
)

_BARE_LF = re.compile(r"(?<!\r)\n")


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
    target = resolve_inside(root, path)
    if os.path.lexists(target):
        raise AlreadyExists(f"{path} already exists", details={"path": path})
    data = text.encode("utf-8", "surrogateescape")
    _check_size(path, data, max_bytes)
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
    if not old.strip():
        raise EmptyOldString("old_str must hold at least one non-whitespace character")
    if old == new:
        raise NoOp("old_str and new_str are the same; nothing would change")
    target, tf = _read(root, path, expected_hash, max_bytes)
    text = tf.text
    if uniform_newline(text) == "\r\n" and "\r" not in old:
        old, new = old.replace("\n", "\r\n"), _BARE_LF.sub("\r\n", new)
        if old == new:
            raise NoOp("old_str and new_str are the same; nothing would change")
    found = _occurrences(text, old)
    if not found:
        raise OldStringNotFound(
            f"old_str does not occur in {path} (it must match exactly, whitespace included)",
            details={"path": path},
        )
    if len(found) > 1:
        lines = [count_line_breaks(text[:at]) + 1 for at in found]
        raise Ambiguous(
            f"old_str occurs {len(found)} times in {path} (lines "
            f"{', '.join(map(str, lines))}); include more context to make it unique",
            lines=lines,
            path=path,
        )
    at = found[0]
    return _write(target, path, tf, text[:at] + new + text[at + len(old) :], max_bytes)


def _occurrences(text: str, needle: str) -> list[int]:
    """Every start of ``needle`` in ``text``, overlapping ones included."""
    found: list[int] = []
    at = text.find(needle)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + 1)
    return found


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
    target, tf = _read(root, path, expected_hash, max_bytes)
    lines = split_lines(tf.text)
    if not 0 <= insert_line <= len(lines):
        raise OutOfRange(
            f"insert_line {insert_line} must be between 0 and {len(lines)}",
            details={"insert_line": insert_line, "total_lines": len(lines)},
        )
    newline = dominant_newline(tf.text)
    block = to_newline(text, newline)
    if not block.endswith(newline):
        block += newline
    if lines and insert_line == len(lines) and lines[-1] == strip_ending(lines[-1]):
        # After a last line without newline: keep the file without a final newline.
        after = tf.text + newline + block[: -len(newline)]
    else:
        after = "".join(lines[:insert_line]) + block + "".join(lines[insert_line:])
    return _write(target, path, tf, after, max_bytes)


def _read(
    root: Path, path: str, expected_hash: str | None, max_bytes: int
) -> tuple[Path, TextFile]:
    target = resolve_inside(root, path)
    tf = read_text_file(target, max_bytes=max_bytes, name=path)
    if expected_hash is not None and expected_hash != tf.sha256:
        raise EditConflict(
            f"{path} changed since it was read; view it again",
            current_hash=tf.sha256,
            path=path,
        )
    return target, tf


def _check_size(path: str, data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise TooLarge(
            f"{path} would be {len(data)} bytes; the limit is {max_bytes}",
            details={"path": path, "size": len(data), "limit": max_bytes},
        )


def _write(target: Path, path: str, tf: TextFile, after: str, max_bytes: int) -> EditResult:
    data = tf.encode(after)
    _check_size(path, data, max_bytes)
    atomic_write(target, data)
    return _result(path, tf.data, data)


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

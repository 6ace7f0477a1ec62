"""Unified diffs: parse them, apply them strictly (every file or none), export them.

The line model is git's: lines are split on ``\\n`` only, so the ``\\r`` of a CRLF
line is part of its content. A patch made from a CRLF file carries that ``\\r``
before each ``\\n`` and applies byte for byte; a line marked ``\\ No newline at end
of file`` has no ``\\n`` at all.

Applying is strict: with ``fuzz=0`` each hunk's context and removed lines must
be at the position its header states (hunks before it having been applied; their
offset carries over). Only when asked does a hunk move: ``offsets=True`` lets it
match, context and all, at the nearest other position where it does (as ``git
apply`` does); ``fuzz=N`` also lets it move, and ignores up to N context lines at
each of its edges (as ``patch --fuzz``). All new contents are
computed in memory first and written with one :class:`BulkWriter` write.
Parsing lives in :mod:`ymera.code.patchparse`; its names are re-exported here.
"""

from __future__ import annotations

import contextlib
import difflib
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ymera.code.bulk import BulkWriter, Change, Delete, Write
from ymera.code.errors import InvalidPatch, PatchFailed, TooLarge
from ymera.code.gitquote import quote_path
from ymera.code.patchparse import DEV_NULL, NO_NEWLINE, FilePatch, Hunk, parse_patch
from ymera.code.paths import resolve_inside
from ymera.code.textfile import DEFAULT_MAX_BYTES, encode_text, read_text_file

__all__ = [
    "ApplyReport",
    "FileChange",
    "FilePatch",
    "FileReport",
    "Hunk",
    "apply_hunks",
    "apply_patch",
    "make_patch",
    "parse_patch",
    "split_nl",
]

JOURNAL_DIR_NAME = ".ymera-journal"

FileChange = tuple[str | None, str | None, str | None, str | None]
"""``(path_before, path_after, text_before, text_after)``; a None path means the
file does not exist on that side (new or deleted file)."""


# --- applying ---------------------------------------------------------------------------


def split_nl(text: str) -> list[str]:
    """Lines split on ``\\n`` only, each with its ``\\n`` (the last maybe without)."""
    lines = text.split("\n")
    last = lines.pop()
    out = [line + "\n" for line in lines]
    if last:
        out.append(last)
    return out


def apply_hunks(
    text: str, hunks: Sequence[Hunk], *, fuzz: int = 0, offsets: bool = False, path: str = ""
) -> str:
    """``text`` with ``hunks`` applied; :class:`PatchFailed` naming the failing hunk.

    Strict by default: each hunk exactly where its header says (shifted by the
    offset of the hunks before it). ``offsets``: a hunk that is not there may match,
    every line of it, at the nearest position that does (the later on a tie), below
    the previous hunk, except where git apply anchors it (see :func:`_positions`).
    ``fuzz=N``: a hunk may move and drop up to N context lines at each edge.
    """
    lines = split_nl(text)
    out: list[str] = []
    cursor = drift = 0
    for hunk in hunks:
        stated = hunk.position + drift
        found = _locate(lines, hunk, stated, cursor, fuzz, offsets=offsets)
        if found is None:
            raise _failed(path, hunk, lines, max(stated, 0))
        at, head, tail = found
        new = hunk.new_lines
        out.extend(lines[cursor:at])
        out.extend(new[head : len(new) - tail])
        cursor = at + len(hunk.old_lines) - head - tail
        drift = at - head - hunk.position
    out.extend(lines[cursor:])
    for n, line in enumerate(out[:-1], 1):
        if not line.endswith("\n"):
            raise PatchFailed(
                f"{path}: a line without newline would be followed by more lines (line {n})",
                details={"file": path, "line": n, "reason": "misplaced no-newline marker"},
            )
    return "".join(out)


def _locate(
    lines: list[str], hunk: Hunk, stated: int, lo: int, fuzz: int, *, offsets: bool
) -> tuple[int, int, int] | None:
    """Where ``hunk`` applies: (index, context lines dropped at its head, at its tail)."""
    old = hunk.old_lines
    if fuzz == 0:
        hi = len(lines) - len(old)
        for at in _positions(hunk, stated, lo, hi, offsets=offsets):
            if lines[at : at + len(old)] == old:
                return at, 0, 0
        return None
    lead, trail = _context(hunk, with_added=False)
    tried: set[tuple[int, int]] = set()
    for trim in range(fuzz + 1):
        head = min(trim, lead)
        tail = min(trim, trail, len(old) - head)
        if (head, tail) in tried:
            continue
        tried.add((head, tail))
        core = old[head : len(old) - tail]
        for at in _candidates(stated + head, lo, len(lines) - len(core)):
            if lines[at : at + len(core)] == core:
                return at, head, tail
    return None


def _context(hunk: Hunk, *, with_added: bool) -> tuple[int, int]:
    """How many context lines lead and trail the hunk's changes (its removed lines
    only, unless ``with_added``)."""
    tags = [tag for tag, _ in hunk.lines if with_added or tag != "+"]
    lead = next((k for k, tag in enumerate(tags) if tag != " "), len(tags))
    trail = next((k for k, tag in enumerate(reversed(tags)) if tag != " "), len(tags))
    return lead, trail


def _positions(hunk: Hunk, stated: int, lo: int, hi: int, *, offsets: bool) -> Iterator[int]:
    """Where a hunk may match with every line: where it says; with ``offsets`` also
    elsewhere, nearest first, unless git apply's anchors hold it: a hunk with no
    context at all stays put, one starting at line 1 matches only at the top, and
    one with context before its change but none after only at the end."""
    lead, trail = _context(hunk, with_added=True)
    if not offsets or not (lead or trail):
        anchored = stated
    elif hunk.old_start <= 1:
        anchored = 0
    elif trail == 0:
        anchored = hi
    else:
        yield from _candidates(stated, lo, hi)
        return
    if lo <= anchored <= hi:
        yield anchored


def _candidates(want: int, lo: int, hi: int) -> Iterator[int]:
    """``want``, then every position in ``lo..hi`` by distance from it, the later
    first on a tie (as git apply and patch try them)."""
    if lo <= want <= hi:
        yield want
    for delta in range(1, max(want - lo, hi - want) + 1):
        for at in (want + delta, want - delta):
            if lo <= at <= hi:
                yield at


def _failed(path: str, hunk: Hunk, lines: list[str], at: int) -> PatchFailed:
    expected = hunk.old_lines
    found = lines[at : at + len(expected)]
    if at + len(expected) > len(lines):
        why = f"the file has only {len(lines)} lines"
    else:
        why = "context or removed lines do not match"
    return PatchFailed(
        f"{path}: hunk {hunk.header} does not apply at line {at + 1}: {why}",
        details={
            "file": path,
            "hunk": hunk.header,
            "line": at + 1,
            "expected": expected,
            "found": found,
            "reason": why,
        },
    )


@dataclass(frozen=True)
class FileReport:
    path: str
    status: Literal["added", "modified", "deleted", "renamed"]
    added: int
    removed: int
    old_path: str | None = None  # set for a rename


@dataclass(frozen=True)
class ApplyReport:
    files: list[FileReport]
    dry_run: bool
    before: dict[str, bytes | None]  # every written path: its bytes before (None: absent)
    after: dict[str, bytes | None]  # ... and after (None: deleted)

    @property
    def lines_added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def lines_removed(self) -> int:
        return sum(f.removed for f in self.files)


@dataclass
class _Virtual:
    """A file as the patch has left it so far."""

    original: bytes | None  # on disk before the patch (None: absent)
    text: str | None  # now (None: absent)
    encoding: str = "utf-8"
    bom: bytes = b""
    mode: int | None = None  # for a file the patch creates (None: the umask default)


class _Tree:
    """The files a patch touches, as it has left them so far (nothing written)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.files: dict[Path, _Virtual] = {}

    def load(self, rel: str) -> tuple[Path, _Virtual]:
        target = resolve_inside(self.root, rel)
        if target not in self.files:
            if target.exists() or target.is_symlink():
                tf = read_text_file(target, max_bytes=self.max_bytes, name=rel)
                self.files[target] = _Virtual(tf.data, tf.text, tf.encoding, tf.bom)
            else:
                self.files[target] = _Virtual(None, None)
        return target, self.files[target]

    def apply(self, fp: FilePatch, *, fuzz: int, offsets: bool) -> FileReport:
        """One file's patch applied to the tree (or :class:`PatchFailed`)."""
        src_path, src = self.load(fp.old_path if fp.old_path is not None else fp.path)
        if fp.is_new and src.text is not None:
            raise _refuse(fp, "the patch creates it but it already exists")
        if not fp.is_new and src.text is None:
            raise _refuse(fp, "the file does not exist")
        result = apply_hunks(src.text or "", fp.hunks, fuzz=fuzz, offsets=offsets, path=fp.path)
        counts = sum(h.added for h in fp.hunks), sum(h.removed for h in fp.hunks)
        if fp.is_deleted:
            if result:
                raise _refuse(fp, "the patch deletes it but does not remove all of its lines")
            src.text = None
            return FileReport(fp.path, "deleted", *counts)
        if fp.is_new:
            src.text, src.mode = result, 0o755 if fp.new_mode == "100755" else None
            return FileReport(fp.path, "added", *counts)
        if fp.is_rename:
            _, dst = self.load(fp.path)
            if dst.text is not None:
                raise _refuse(fp, f"cannot rename {fp.old_path} onto an existing file")
            mode = src.mode if src.original is None else stat.S_IMODE(src_path.stat().st_mode)
            dst.text, dst.encoding, dst.bom, dst.mode = result, src.encoding, src.bom, mode
            src.text = None
            return FileReport(fp.path, "renamed", *counts, old_path=fp.old_path)
        src.text = result
        return FileReport(fp.path, "modified", *counts)


def _refuse(fp: FilePatch, why: str) -> PatchFailed:
    return PatchFailed(f"{fp.path}: {why}", details={"file": fp.path, "reason": why})


def apply_patch(
    root: Path,
    patch_text: str,
    *,
    dry_run: bool = False,
    fuzz: int = 0,
    offsets: bool = False,
    journal_dir: Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ApplyReport:
    """Apply every hunk of every file of ``patch_text`` under ``root``, or nothing.

    Strict unless asked: ``offsets`` lets hunks match exactly at a shifted position,
    ``fuzz`` also lets them drop context (see :func:`apply_hunks`).

    ``journal_dir`` (for :class:`BulkWriter`) defaults to ``root/.ymera-journal``
    (hidden from views), removed again once empty. A service should pass its own
    and call :func:`ymera.code.bulk.recover` on it at start-up.
    """
    if fuzz < 0:
        raise ValueError("fuzz must be 0 or more")
    patches = parse_patch(patch_text)
    real_root = root.resolve(strict=True)
    tree = _Tree(real_root, max_bytes)
    reports = [tree.apply(fp, fuzz=fuzz, offsets=offsets) for fp in patches]
    changes, before, after = _changes(real_root, tree.files, max_bytes)
    if not dry_run and changes:
        journal = journal_dir or real_root / JOURNAL_DIR_NAME
        BulkWriter(real_root, journal).apply(changes)
        if journal_dir is None:
            with contextlib.suppress(OSError):  # keep the workspace clean: only if empty
                journal.rmdir()
    return ApplyReport(reports, dry_run, before, after)


def _changes(
    root: Path, state: dict[Path, _Virtual], max_bytes: int
) -> tuple[list[Change], dict[str, bytes | None], dict[str, bytes | None]]:
    changes: list[Change] = []
    before: dict[str, bytes | None] = {}
    after: dict[str, bytes | None] = {}
    for target, v in state.items():
        rel = target.relative_to(root).as_posix()
        new = None if v.text is None else encode_text(v.text, v.encoding, v.bom)
        if new is not None and len(new) > max_bytes:
            raise TooLarge(
                f"{rel} would be {len(new)} bytes; the limit is {max_bytes}",
                details={"path": rel, "size": len(new), "limit": max_bytes},
            )
        if new == v.original:
            continue
        before[rel], after[rel] = v.original, new
        mode = v.mode if v.original is None else None
        changes.append(Delete(rel) if new is None else Write(rel, new, mode=mode))
    return changes, before, after


# --- exporting --------------------------------------------------------------------------


def make_patch(changes: Sequence[FileChange], *, context: int = 3) -> str:
    """A git-style unified diff of ``changes`` that ``git apply`` accepts."""
    return "".join(_file_diff(*change, context=context) for change in changes)


def _file_diff(
    old_path: str | None,
    new_path: str | None,
    old_text: str | None,
    new_text: str | None,
    *,
    context: int,
) -> str:
    if (old_path is None) != (old_text is None) or (new_path is None) != (new_text is None):
        raise InvalidPatch("Each side needs both a path and a text, or neither")
    a, b = old_path or new_path, new_path or old_path
    if a is None or b is None:
        raise InvalidPatch("A change needs a path before or after")
    out = [f"diff --git {quote_path('a/' + a)} {quote_path('b/' + b)}\n"]
    if old_path is None:
        out.append("new file mode 100644\n")
    elif new_path is None:
        out.append("deleted file mode 100644\n")
    elif old_path != new_path:
        out.append(f"rename from {quote_path(old_path)}\nrename to {quote_path(new_path)}\n")
    elif old_text == new_text:
        return ""
    hunks = list(_hunk_texts(old_text or "", new_text or "", context))
    if hunks:
        out.append(f"--- {_label('a/', old_path)}\n+++ {_label('b/', new_path)}\n")
        out.extend(hunks)
    return "".join(out)


def _label(prefix: str, path: str | None) -> str:
    if path is None:
        return DEV_NULL
    quoted = quote_path(prefix + path)
    return quoted + "\t" if " " in quoted and not quoted.startswith('"') else quoted


def _hunk_texts(old: str, new: str, context: int) -> Iterator[str]:
    a, b = split_nl(old), split_nl(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        parts = [f"@@ -{_range(i1, i2)} +{_range(j1, j2)} @@\n"]
        for tag, ai1, ai2, bj1, bj2 in group:
            if tag == "equal":
                parts.extend(_line(" ", line) for line in a[ai1:ai2])
                continue
            parts.extend(_line("-", line) for line in a[ai1:ai2])
            parts.extend(_line("+", line) for line in b[bj1:bj2])
        yield "".join(parts)


def _range(start: int, stop: int) -> str:
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start if length == 0 else start + 1},{length}"


def _line(tag: str, line: str) -> str:
    return tag + line if line.endswith("\n") else f"{tag}{line}\n{NO_NEWLINE}\n"

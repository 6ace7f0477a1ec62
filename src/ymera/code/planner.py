"""Editor operations computed in memory, for proposals and all-or-nothing bulk edits.

:mod:`ymera.code.ops` writes each operation to disk at once. A proposal must not
write anything, and a bulk edit must check every operation before it writes
any, so both run here against the files' contents in memory, with the same
rules (and the same typed errors) as :mod:`ymera.code.ops`: exact matching, the
CRLF convenience of ``str_replace``, whole-line inserts with the file's line
ending, encodings, BOMs, final newlines and tabs kept. A test pins that both
give the same bytes.

:meth:`Plan.changes` then gives the new contents, which the caller writes with
one :class:`~ymera.code.bulk.BulkWriter` write (or stores as a proposal).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ymera.code.errors import (
    AlreadyExists,
    Ambiguous,
    EditConflict,
    EmptyOldString,
    FileNotFound,
    NoOp,
    NotAFile,
    OldStringNotFound,
    OutOfRange,
    TooLarge,
)
from ymera.code.textfile import (
    count_line_breaks,
    dominant_newline,
    encode_text,
    read_text_file,
    sha256_hex,
    split_lines,
    strip_ending,
    to_newline,
    uniform_newline,
)

_BARE_LF = re.compile(r"(?<!\r)\n")

Resolver = Callable[[str], tuple[Path, str]]
"""Maps a caller's path to (real path on disk, key); raises for escaping paths."""


@dataclass
class _File:
    key: str
    original: bytes | None  # on disk (None: absent)
    text: str | None  # as the plan has left it (None: absent)
    encoding: str = "utf-8"
    bom: bytes = b""


@dataclass(frozen=True)
class Planned:
    """One file the plan changes: its key and bytes before and after (None: absent)."""

    path: str
    before: bytes | None
    after: bytes | None


class Plan:
    """A sequence of editor operations over a workspace, applied to memory only."""

    def __init__(self, resolve: Resolver, *, max_bytes: int) -> None:
        self._resolve = resolve
        self._max_bytes = max_bytes
        self._files: dict[str, _File] = {}

    # --- loading ----------------------------------------------------------------

    def _load(self, path: str, *, creating: bool = False) -> _File:
        target, key = self._resolve(path)
        known = self._files.get(key)
        if known is not None:
            return known
        if creating and os.path.lexists(target) and not target.is_file():
            raise AlreadyExists(f"{path} already exists", details={"path": path})
        if os.path.lexists(target):
            tf = read_text_file(target, max_bytes=self._max_bytes, name=path)
            loaded = _File(key, tf.data, tf.text, tf.encoding, tf.bom)
        else:
            if creating:
                self._check_parents(target, key, path)
            loaded = _File(key, None, None)
        self._files[key] = loaded
        return loaded

    def _check_parents(self, target: Path, key: str, path: str) -> None:
        parent = target.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise NotAFile(f"A parent of {path} is not a directory", details={"path": path})
        for other in self._files.values():
            if other.text is not None and key.startswith(other.key + "/"):
                raise NotAFile(f"A parent of {path} is a file", details={"path": path})

    def _existing(self, path: str, expected_hash: str | None = None) -> _File:
        f = self._load(path)
        if f.text is None:
            raise FileNotFound(f"No such file: {path}", details={"path": path})
        if expected_hash is not None:
            current = sha256_hex(self._encode(f, f.text, path))
            if current != expected_hash:
                raise EditConflict(
                    f"{path} changed since it was read; view it again",
                    current_hash=current,
                    path=path,
                )
        return f

    def _encode(self, f: _File, text: str, path: str) -> bytes:
        data = encode_text(text, f.encoding, f.bom)
        if len(data) > self._max_bytes:
            raise TooLarge(
                f"{path} would be {len(data)} bytes; the limit is {self._max_bytes}",
                details={"path": path, "size": len(data), "limit": self._max_bytes},
            )
        return data

    def _set(self, f: _File, text: str, path: str) -> None:
        self._encode(f, text, path)  # size and encodability, checked now
        f.text = text

    # --- operations (the rules of ymera.code.ops) --------------------------------

    def create(self, path: str, text: str) -> None:
        """A new UTF-8 file; :class:`AlreadyExists` if it exists."""
        f = self._load(path, creating=True)
        if f.text is not None:
            raise AlreadyExists(f"{path} already exists", details={"path": path})
        for other in self._files.values():
            if other.text is not None and other.key.startswith(f.key + "/"):
                raise AlreadyExists(f"{path} is a directory", details={"path": path})
        f.encoding, f.bom = "utf-8", b""
        self._set(f, text, path)

    def write(self, path: str, text: str) -> None:
        """Replace a file's whole text (keeping its encoding), or create it."""
        f = self._load(path, creating=True)
        if f.text is None:
            self.create(path, text)
            return
        self._set(f, text, path)

    def delete(self, path: str) -> None:
        f = self._existing(path)
        f.text = None

    def str_replace(
        self, path: str, old: str, new: str, *, expected_hash: str | None = None
    ) -> None:
        if not old.strip():
            raise EmptyOldString("old_str must hold at least one non-whitespace character")
        if old == new:
            raise NoOp("old_str and new_str are the same; nothing would change")
        f = self._existing(path, expected_hash)
        text = f.text or ""
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
        self._set(f, text[:at] + new + text[at + len(old) :], path)

    def insert(
        self, path: str, insert_line: int, text: str, *, expected_hash: str | None = None
    ) -> None:
        f = self._existing(path, expected_hash)
        current = f.text or ""
        lines = split_lines(current)
        if not 0 <= insert_line <= len(lines):
            raise OutOfRange(
                f"insert_line {insert_line} must be between 0 and {len(lines)}",
                details={"insert_line": insert_line, "total_lines": len(lines)},
            )
        newline = dominant_newline(current)
        block = to_newline(text, newline)
        if not block.endswith(newline):
            block += newline
        if lines and insert_line == len(lines) and lines[-1] == strip_ending(lines[-1]):
            after = current + newline + block[: -len(newline)]
        else:
            after = "".join(lines[:insert_line]) + block + "".join(lines[insert_line:])
        self._set(f, after, path)

    # --- result -------------------------------------------------------------------

    def changes(self) -> list[Planned]:
        """Every file whose bytes the plan changes, in the order first touched."""
        out = []
        for f in self._files.values():
            after = None if f.text is None else self._encode(f, f.text, f.key)
            if after != f.original:
                out.append(Planned(f.key, f.original, after))
        return out


def _occurrences(text: str, needle: str) -> list[int]:
    """Every start of ``needle`` in ``text``, overlapping ones included."""
    found: list[int] = []
    at = text.find(needle)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + 1)
    return found

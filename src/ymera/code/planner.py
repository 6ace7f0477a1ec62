"""Editor operations computed in memory, for proposals and all-or-nothing bulk edits.

:mod:`ymera.code.ops` writes each operation to disk at once. A proposal must not
write anything, and a bulk edit must check every operation before it writes
any, so both run here against the files' contents in memory. The rules themselves
(exact matching, the CRLF convenience of ``str_replace``, whole-line inserts with
the file's line ending, encodings, BOMs, final newlines and tabs kept, the typed
errors) are the pure functions of :mod:`ymera.code.edit_rules`, which
:mod:`ymera.code.ops` applies too; a test pins that both give the same bytes and
errors.

:meth:`Plan.changes` then gives the new contents, which the caller writes with
one :class:`~ymera.code.bulk.BulkWriter` write (or stores as a proposal).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ymera.code import edit_rules as rules
from ymera.code.errors import AlreadyExists, FileNotFound, NotAFile
from ymera.code.textfile import TextFile, read_text_file

Resolver = Callable[[str], tuple[Path, str]]
"""Maps a caller's path to (real path on disk, key); raises for escaping paths."""


@dataclass
class _File:
    key: str
    original: bytes | None  # on disk (None: absent)
    current: TextFile | None  # as the plan has left it (None: absent)


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
            loaded = _File(key, tf.data, tf)
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
            if other.current is not None and key.startswith(other.key + "/"):
                raise NotAFile(f"A parent of {path} is a file", details={"path": path})

    def _existing(self, path: str, expected_hash: str | None = None) -> tuple[_File, TextFile]:
        f = self._load(path)
        if f.current is None:
            raise FileNotFound(f"No such file: {path}", details={"path": path})
        rules.check_expected_hash(f.current, expected_hash, path=path)
        return f, f.current

    # --- operations (the rules of ymera.code.edit_rules, as ymera.code.ops) ------------

    def create(self, path: str, text: str) -> None:
        """A new UTF-8 file; :class:`AlreadyExists` if it exists."""
        rules.check_text(text, field="file_text")
        f = self._load(path, creating=True)
        if f.current is not None:
            raise AlreadyExists(f"{path} already exists", details={"path": path})
        for other in self._files.values():
            if other.current is not None and other.key.startswith(f.key + "/"):
                raise AlreadyExists(f"{path} is a directory", details={"path": path})
        f.current = rules.new_file(text, path=path, max_bytes=self._max_bytes)

    def write(self, path: str, text: str) -> None:
        """Replace a file's whole text (keeping its encoding), or create it."""
        f = self._load(path, creating=True)
        if f.current is None:
            self.create(path, text)
            return
        f.current = rules.rewrite(f.current, text, path=path, max_bytes=self._max_bytes)

    def delete(self, path: str) -> None:
        f, _ = self._existing(path)
        f.current = None

    def str_replace(
        self, path: str, old: str, new: str, *, expected_hash: str | None = None
    ) -> None:
        rules.check_replace(old, new)
        f, current = self._existing(path, expected_hash)
        f.current = rules.str_replace(current, old, new, path=path, max_bytes=self._max_bytes)

    def insert(
        self, path: str, insert_line: int, text: str, *, expected_hash: str | None = None
    ) -> None:
        rules.check_text(text, field="insert_text")
        f, current = self._existing(path, expected_hash)
        f.current = rules.insert(current, insert_line, text, path=path, max_bytes=self._max_bytes)

    # --- result -------------------------------------------------------------------

    def changes(self) -> list[Planned]:
        """Every file whose bytes the plan changes, in the order first touched."""
        out = []
        for f in self._files.values():
            after = None if f.current is None else f.current.data
            if after != f.original:
                out.append(Planned(f.key, f.original, after))
        return out

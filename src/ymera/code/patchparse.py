"""Parse unified diffs (git-style and plain) into :class:`FilePatch` objects.

Supported: ``diff --git`` headers with ``new file mode``, ``deleted file mode``,
``old mode``/``new mode``, ``rename from``/``rename to``, ``similarity`` and
``index`` lines; plain ``---``/``+++`` patches (a timestamp after a tab is
ignored); ``/dev/null``; quoted names; several files and hunks; ``\\ No newline
at end of file``. Malformed input raises :class:`InvalidPatch` naming the line.

Lines are split on ``\\n`` only (git's model): a ``\\r`` before it is content.
Plain (non-git) patches are never renames: the file patched is the ``+++`` name
(the ``---`` name when that is ``/dev/null``), and the ``a/``, ``b/`` prefixes are
dropped when both names carry them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ymera.code.errors import InvalidPatch
from ymera.code.gitquote import git_names, unquote_path

HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
NO_NEWLINE = "\\ No newline at end of file"
DEV_NULL = "/dev/null"


@dataclass
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    header: str
    # (" " | "-" | "+", the line with its "\n" unless marked "no newline")
    lines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def old_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != "+"]

    @property
    def new_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != "-"]

    @property
    def position(self) -> int:
        """0-based index of the first old line (for a pure insertion: where it goes)."""
        return self.old_start if self.old_count == 0 else self.old_start - 1

    @property
    def added(self) -> int:
        return sum(1 for tag, _ in self.lines if tag == "+")

    @property
    def removed(self) -> int:
        return sum(1 for tag, _ in self.lines if tag == "-")


@dataclass
class FilePatch:
    old_path: str | None  # None: a new file
    new_path: str | None  # None: a deleted file
    hunks: list[Hunk] = field(default_factory=list)
    old_mode: str | None = None
    new_mode: str | None = None

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""

    @property
    def is_new(self) -> bool:
        return self.old_path is None

    @property
    def is_deleted(self) -> bool:
        return self.new_path is None

    @property
    def is_rename(self) -> bool:
        return None not in (self.old_path, self.new_path) and self.old_path != self.new_path


# --- parsing ----------------------------------------------------------------------------


def parse_patch(text: str) -> list[FilePatch]:
    """Every file patch in ``text``; :class:`InvalidPatch` when malformed."""
    return _Parser(text).parse()


@dataclass
class _GitHeader:
    """What a git diff's header lines say of its file, as they are read."""

    old: str | None
    new: str | None
    new_file: bool = False
    deleted: bool = False
    modes: dict[str, str] = field(default_factory=dict)


class _Parser:
    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.i = 0

    def parse(self) -> list[FilePatch]:
        patches: list[FilePatch] = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.startswith("diff --git "):
                patches.append(self._git_file())
            elif self._at_file_header():
                patches.append(self._plain_file())
            elif line.startswith("@@ "):
                raise self._error("hunk without a '---'/'+++' file header")
            else:
                self.i += 1
        if not patches:
            raise InvalidPatch("No file changes found in the patch")
        return patches

    def _error(self, message: str) -> InvalidPatch:
        return InvalidPatch(f"line {self.i + 1}: {message}", details={"line": self.i + 1})

    def _header(self, offset: int = 0) -> str:
        return self.lines[self.i + offset].rstrip("\r")

    def _at_file_header(self) -> bool:
        return (
            self.i + 1 < len(self.lines)
            and self.lines[self.i].startswith("--- ")
            and self.lines[self.i + 1].startswith("+++ ")
        )

    def _file_names(self) -> tuple[str | None, str | None]:
        old, new = _name(self._header()[4:]), _name(self._header(1)[4:])
        self.i += 2
        return old, new

    def _plain_file(self) -> FilePatch:
        old, new = self._file_names()
        if old is None and new is None:
            raise self._error("both file names are /dev/null")
        if old is not None and new is not None:
            if old.startswith("a/") and new.startswith("b/"):
                old, new = old[2:], new[2:]
            old = new
        elif old is not None:
            old = old.removeprefix("a/")
        elif new is not None:
            new = new.removeprefix("b/")
        fp = FilePatch(old, new)
        self._hunks(fp)
        if not fp.hunks:
            raise self._error(f"no hunks for {fp.path}")
        return fp

    def _git_file(self) -> FilePatch:
        start = self.i
        a, b = git_names(self._header()[len("diff --git ") :])
        self.i += 1
        head = _GitHeader(a, b)
        while self.i < len(self.lines):
            line = self._header()
            if line.startswith(("diff --git ", "@@ ")):
                break
            if self._at_file_header():
                minus, plus = self._file_names()
                head.new_file = head.new_file or minus is None
                head.deleted = head.deleted or plus is None
                head.old = head.old if minus is None else minus.removeprefix("a/")
                head.new = head.new if plus is None else plus.removeprefix("b/")
                break
            if not self._extended_line(line, head):
                break
            self.i += 1
        if head.old is None or head.new is None:
            raise InvalidPatch(
                f"line {start + 1}: cannot tell the file names of {self.lines[start]!r}",
                details={"line": start + 1},
            )
        fp = FilePatch(
            None if head.new_file else head.old,
            None if head.deleted else head.new,
            old_mode=head.modes.get("old"),
            new_mode=head.modes.get("new"),
        )
        self._hunks(fp)
        if not (fp.hunks or head.new_file or head.deleted or fp.is_rename or head.modes):
            raise InvalidPatch(f"line {start + 1}: no change for {fp.path}")
        return fp

    def _extended_line(self, line: str, head: _GitHeader) -> bool:
        """One line of a git diff's extended header (modes, renames, index)
        noted in ``head``; False for a line that is not one (the header ends)."""
        if line.startswith("--- "):
            raise self._error("'---' line not followed by '+++'")
        key, _, value = line.partition(" ")
        if line.startswith(("new file mode ", "deleted file mode ")):
            head.new_file = head.new_file or line.startswith("new")
            head.deleted = head.deleted or line.startswith("deleted")
            head.modes["new" if head.new_file else "old"] = line.rsplit(" ", 1)[1]
        elif line.startswith(("old mode ", "new mode ")):
            head.modes[key] = value.rsplit(" ", 1)[1]
        elif line.startswith("rename from "):
            head.old = unquote_path(line[len("rename from ") :])
        elif line.startswith("rename to "):
            head.new = unquote_path(line[len("rename to ") :])
        elif line.startswith(("copy from ", "copy to ")):
            raise self._error("copies are not supported; send the new file in full")
        elif line.startswith(("GIT binary patch", "Binary files ")):
            raise self._error("binary patches are not supported")
        elif not line.startswith(("index ", "similarity index ", "dissimilarity index ")):
            return False
        return True

    def _hunks(self, fp: FilePatch) -> None:
        while self.i < len(self.lines) and self.lines[self.i].startswith("@@"):
            hunk = self._hunk(fp.path)
            if fp.is_new and hunk.old_count:
                raise self._error(f"hunk {hunk.header} of new file {fp.path} has old lines")
            if fp.is_deleted and hunk.new_count:
                raise self._error(f"hunk {hunk.header} of deleted file {fp.path} has new lines")
            if fp.hunks:
                prev = fp.hunks[-1]
                if hunk.position < prev.position + prev.old_count:
                    raise self._error(f"hunk {hunk.header} of {fp.path} overlaps the one before")
            fp.hunks.append(hunk)

    def _hunk(self, path: str) -> Hunk:
        header = self._header()
        match = HUNK_HEADER.match(header)
        if match is None:
            raise self._error(f"malformed hunk header {header!r}")
        old_count = 1 if match[2] is None else int(match[2])
        new_count = 1 if match[4] is None else int(match[4])
        hunk = Hunk(int(match[1]), old_count, int(match[3]), new_count, header)
        self.i += 1
        old_left, new_left = old_count, new_count
        while old_left > 0 or new_left > 0:
            if self.i >= len(self.lines):
                raise self._error(
                    f"hunk {header} of {path} ends early: {old_left} old and {new_left} new "
                    "lines missing"
                )
            line = self.lines[self.i]
            tag = line[:1] or " "  # an empty line: a context line whose space was stripped
            if tag == "\\":
                self._no_newline(hunk)
                continue
            fits = {" ": old_left and new_left, "-": old_left, "+": new_left}.get(tag)
            if not fits:
                raise self._error(
                    f"hunk {header} of {path} does not match its line counts "
                    f"(-{old_count} +{new_count}): unexpected {line!r}"
                )
            hunk.lines.append((tag, line[1:] + "\n"))
            old_left -= tag != "+"
            new_left -= tag != "-"
            self.i += 1
        if self.i < len(self.lines) and self.lines[self.i].startswith("\\"):
            self._no_newline(hunk)
        if self.i < len(self.lines):
            nxt = self.lines[self.i]
            if nxt[:1] in ("+", "-", " ") and nxt != "-- " and not self._at_file_header():
                raise self._error(
                    f"hunk {header} of {path} has more lines than its header counts "
                    f"(-{old_count} +{new_count})"
                )
        return hunk

    def _no_newline(self, hunk: Hunk) -> None:
        if not hunk.lines or not hunk.lines[-1][1].endswith("\n"):
            raise self._error("'\\ No newline at end of file' does not follow a line")
        tag, text = hunk.lines[-1]
        hunk.lines[-1] = (tag, text[:-1])
        self.i += 1


def _name(raw: str) -> str | None:
    """A ``---``/``+++`` file name: unquoted, without a timestamp; None for /dev/null."""
    name = unquote_path(raw) if raw.startswith('"') else raw.split("\t", 1)[0]
    return None if name == DEV_NULL else name

"""The text editor's rules, once: pure functions from a file's content to its new content.

Each function takes the file as read (a :class:`~ymera.code.textfile.TextFile`) and
returns the new one (text, encoding and BOM kept, bytes encoded, size checked), or
raises the typed error of :mod:`ymera.code.errors`. Nothing here touches the disk:
:mod:`ymera.code.ops` writes the result at once, :mod:`ymera.code.planner` keeps it
in memory (proposals, all-or-nothing bulk edits). Both therefore give the same bytes
and the same errors by construction.

The rules:

- Text given to the editor (``file_text``, ``old_str``, ``new_str``,
  ``insert_text``) must not hold a lone surrogate code point (U+D800-U+DFFF): no
  encoding can write one (:class:`InvalidText`, 422 ``invalid_text``).
- Lines are numbered over every line break (CRLF, LF, CR).
- ``str_replace`` matches the exact text, once: absent is
  :class:`OldStringNotFound`, several (overlapping ones too) :class:`Ambiguous` with
  every line. One convenience: when the file uses CRLF throughout and ``old`` holds
  no ``\\r``, each bare ``\\n`` of ``old`` and ``new`` is taken to mean CRLF (agents
  usually send LF-only text). In a file with mixed endings nothing is translated.
- ``insert`` writes the text as whole lines with the file's (dominant) line ending
  (a single trailing newline does not add a blank line); after a last line without
  newline, the file stays without a final newline.
- ``create`` writes UTF-8 without BOM; rewriting a file keeps its encoding and BOM.
"""

from __future__ import annotations

import re

from ymera.code.errors import (
    Ambiguous,
    EditConflict,
    EmptyOldString,
    InvalidText,
    NoOp,
    OldStringNotFound,
    OutOfRange,
    TooLarge,
)
from ymera.code.textfile import (
    TextFile,
    count_line_breaks,
    dominant_newline,
    encode_text,
    sha256_hex,
    split_lines,
    strip_ending,
    to_newline,
    uniform_newline,
)

_BARE_LF = re.compile(r"(?<!\r)\n")
_SURROGATE = re.compile("[\ud800-\udfff]")


# --- checks on the caller's input -------------------------------------------------------


def check_text(value: str, *, field: str) -> None:
    """:class:`InvalidText` when ``value`` holds a lone surrogate code point."""
    found = _SURROGATE.search(value)
    if found is not None:
        raise InvalidText(
            f"{field} holds the lone surrogate U+{ord(found.group()):04X} at offset "
            f"{found.start()}, which no encoding can write",
            details={"field": field, "offset": found.start()},
        )


def check_replace(old: str, new: str) -> None:
    """The checks of ``str_replace`` that need no file (run them before reading it)."""
    check_text(old, field="old_str")
    check_text(new, field="new_str")
    if not old.strip():
        raise EmptyOldString("old_str must hold at least one non-whitespace character")
    if old == new:
        raise NoOp("old_str and new_str are the same; nothing would change")


def check_expected_hash(tf: TextFile, expected_hash: str | None, *, path: str) -> None:
    """:class:`EditConflict` (with the current hash) when the file is not at that version."""
    if expected_hash is not None and expected_hash != tf.sha256:
        raise EditConflict(
            f"{path} changed since it was read; view it again",
            current_hash=tf.sha256,
            path=path,
        )


def check_size(path: str, data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise TooLarge(
            f"{path} would be {len(data)} bytes; the limit is {max_bytes}",
            details={"path": path, "size": len(data), "limit": max_bytes},
        )


# --- the operations ---------------------------------------------------------------------


def new_file(text: str, *, path: str, max_bytes: int) -> TextFile:
    """``create``'s content: ``text`` as UTF-8 without BOM."""
    check_text(text, field="file_text")
    return _encoded(text, "utf-8", b"", path=path, max_bytes=max_bytes)


def rewrite(tf: TextFile, text: str, *, path: str, max_bytes: int) -> TextFile:
    """``tf`` with its whole text replaced by ``text`` (encoding and BOM kept)."""
    check_text(text, field="file_text")
    return _encoded(text, tf.encoding, tf.bom, path=path, max_bytes=max_bytes)


def str_replace(tf: TextFile, old: str, new: str, *, path: str, max_bytes: int) -> TextFile:
    """``tf`` with the one occurrence of ``old`` replaced by ``new``."""
    check_replace(old, new)
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
    after = text[:at] + new + text[at + len(old) :]
    return _encoded(after, tf.encoding, tf.bom, path=path, max_bytes=max_bytes)


def insert(tf: TextFile, insert_line: int, text: str, *, path: str, max_bytes: int) -> TextFile:
    """``tf`` with ``text`` inserted as whole lines after line ``insert_line`` (0: top)."""
    check_text(text, field="insert_text")
    current = tf.text
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
        # After a last line without newline: keep the file without a final newline.
        after = current + newline + block[: -len(newline)]
    else:
        after = "".join(lines[:insert_line]) + block + "".join(lines[insert_line:])
    return _encoded(after, tf.encoding, tf.bom, path=path, max_bytes=max_bytes)


def _occurrences(text: str, needle: str) -> list[int]:
    """Every start of ``needle`` in ``text``, overlapping ones included."""
    found: list[int] = []
    at = text.find(needle)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + 1)
    return found


def _encoded(text: str, encoding: str, bom: bytes, *, path: str, max_bytes: int) -> TextFile:
    data = encode_text(text, encoding, bom)
    check_size(path, data, max_bytes)
    return TextFile(text=text, encoding=encoding, bom=bom, sha256=sha256_hex(data), data=data)

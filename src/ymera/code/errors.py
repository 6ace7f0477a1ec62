"""Typed errors of the code editor, each with a stable machine code and HTTP status.

Every error is an :class:`ymera.errors.YmeraError`, so the app's handler renders it
as problem+json; ``details`` appears in the body under ``"details"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from ymera.errors import YmeraError


class EditorCode(StrEnum):
    """The stable ``code`` of every editor error (lower snake case, as everywhere)."""

    OUTSIDE_WORKSPACE = "outside_workspace"
    NOT_FOUND = "not_found"
    NOT_A_FILE = "not_a_file"
    EXISTS = "exists"
    AMBIGUOUS = "ambiguous"
    NO_OP = "no_op"
    EMPTY_OLD_STRING = "empty_old_string"
    OUT_OF_RANGE = "out_of_range"
    BINARY = "binary"
    TOO_LARGE = "too_large"
    UNENCODABLE = "unencodable"
    CONFLICT = "conflict"
    PATCH_FAILED = "patch_failed"
    INVALID_PATCH = "invalid_patch"
    INVALID_CHANGE = "invalid_change"
    NOTHING_TO_UNDO = "nothing_to_undo"
    INVALID_TEXT = "invalid_text"


class EditorError(YmeraError):
    """Base of every expected editor failure."""

    status_code = 422
    code: str = "editor_error"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        status_code: int | None = None,
        code: str | None = None,
    ) -> None:
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(message, status_code=status_code, code=code, details=self.details)


class OutsideWorkspace(EditorError):
    status_code = 400
    code = EditorCode.OUTSIDE_WORKSPACE


class FileNotFound(EditorError):
    """The file (or directory) does not exist."""

    status_code = 404
    code = EditorCode.NOT_FOUND


class OldStringNotFound(EditorError):
    """``str_replace``'s old string does not occur in the file (same code, 422)."""

    status_code = 422
    code = EditorCode.NOT_FOUND


class NotAFile(EditorError):
    """A file operation met a directory (or a file where a directory is needed)."""

    status_code = 422
    code = EditorCode.NOT_A_FILE


class AlreadyExists(EditorError):
    status_code = 409
    code = EditorCode.EXISTS


class Ambiguous(EditorError):
    """The old string occurs more than once; ``details["lines"]`` holds every match."""

    status_code = 422
    code = EditorCode.AMBIGUOUS

    def __init__(self, message: str, *, lines: Sequence[int], **details: Any) -> None:
        super().__init__(message, details={"lines": list(lines), **details})

    @property
    def lines(self) -> list[int]:
        return list(self.details["lines"])


class NoOp(EditorError):
    status_code = 422
    code = EditorCode.NO_OP


class EmptyOldString(EditorError):
    status_code = 422
    code = EditorCode.EMPTY_OLD_STRING


class OutOfRange(EditorError):
    status_code = 422
    code = EditorCode.OUT_OF_RANGE


class BinaryFile(EditorError):
    status_code = 415
    code = EditorCode.BINARY


class TooLarge(EditorError):
    status_code = 413
    code = EditorCode.TOO_LARGE


class Unencodable(EditorError):
    """The new text cannot be written in the file's encoding (e.g. latin-1)."""

    status_code = 422
    code = EditorCode.UNENCODABLE


class InvalidText(EditorError):
    """The text holds a lone surrogate code point (U+D800-U+DFFF): no encoding writes it."""

    status_code = 422
    code = EditorCode.INVALID_TEXT


class EditConflict(EditorError):
    """The file changed since the caller read it; ``details["current_hash"]``."""

    status_code = 409
    code = EditorCode.CONFLICT

    def __init__(self, message: str, *, current_hash: str | None, **details: Any) -> None:
        super().__init__(message, details={"current_hash": current_hash, **details})


class PatchFailed(EditorError):
    """A patch does not apply. ``details``: file, hunk, expected, found, line, reason."""

    status_code = 422
    code = EditorCode.PATCH_FAILED


class InvalidPatch(EditorError):
    """The patch text is malformed (bad header, hunk counts not matching, ...)."""

    status_code = 422
    code = EditorCode.INVALID_PATCH


class InvalidChange(EditorError):
    """A bulk change set is inconsistent (same path twice, delete of a missing file)."""

    status_code = 422
    code = EditorCode.INVALID_CHANGE


class NothingToUndo(EditorError):
    status_code = 409
    code = EditorCode.NOTHING_TO_UNDO

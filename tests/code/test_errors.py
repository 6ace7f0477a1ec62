"""Editor errors are YmeraErrors with stable codes, statuses and details."""

from __future__ import annotations

import pytest

from ymera.code import errors as e
from ymera.errors import YmeraError


@pytest.mark.parametrize(
    ("cls", "code", "status"),
    [
        (e.OutsideWorkspace, "outside_workspace", 400),
        (e.FileNotFound, "not_found", 404),
        (e.OldStringNotFound, "not_found", 422),
        (e.AlreadyExists, "exists", 409),
        (e.NoOp, "no_op", 422),
        (e.EmptyOldString, "empty_old_string", 422),
        (e.OutOfRange, "out_of_range", 422),
        (e.BinaryFile, "binary", 415),
        (e.TooLarge, "too_large", 413),
        (e.PatchFailed, "patch_failed", 422),
        (e.InvalidPatch, "invalid_patch", 422),
        (e.NothingToUndo, "nothing_to_undo", 409),
    ],
)
def test_codes_and_statuses(cls: type[e.EditorError], code: str, status: int) -> None:
    err = cls("boom", details={"path": "x"})
    assert isinstance(err, YmeraError)
    assert (err.code, err.status_code, err.message) == (code, status, "boom")
    assert err.details == {"path": "x"}
    assert err.extra == {"details": {"path": "x"}}  # rendered in the problem body


def test_ambiguous_and_conflict_details() -> None:
    amb = e.Ambiguous("twice", lines=[2, 7], path="a.py")
    assert (amb.code, amb.status_code, amb.lines) == ("ambiguous", 422, [2, 7])
    assert amb.details == {"lines": [2, 7], "path": "a.py"}
    conflict = e.EditConflict("changed", current_hash="abc")
    assert (conflict.code, conflict.status_code) == ("conflict", 409)
    assert conflict.details["current_hash"] == "abc"


def test_code_enum_values_are_the_codes() -> None:
    assert e.EditorCode.OUTSIDE_WORKSPACE == "outside_workspace"
    assert e.OutsideWorkspace("x").code == e.EditorCode.OUTSIDE_WORKSPACE

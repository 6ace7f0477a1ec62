"""UndoHistory: per-file stacks with a depth, restoring exact bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ymera.code import ops
from ymera.code.errors import NothingToUndo
from ymera.code.ops import UndoHistory


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def test_undo_restores_each_previous_content(root: Path) -> None:
    history = UndoHistory(root)
    path = root / "a.txt"
    history.record(ops.create(root, "a.txt", "v1\r\n"))
    history.record(ops.str_replace(root, "a.txt", "v1", "v2"))
    history.record(ops.insert(root, "a.txt", 1, "more"))
    assert path.read_bytes() == b"v2\r\nmore\r\n"
    assert history.available("a.txt") == 3

    undone = history.undo("a.txt")
    assert path.read_bytes() == b"v2\r\n"
    assert undone.before_text == "v2\r\nmore\r\n"
    assert undone.after_text == "v2\r\n"
    assert "-more\r\n" in undone.diff
    history.undo("a.txt")
    assert path.read_bytes() == b"v1\r\n"
    history.undo("a.txt")  # undoing the create removes the file
    assert not path.exists()
    with pytest.raises(NothingToUndo) as info:
        history.undo("a.txt")
    assert (info.value.code, info.value.status_code) == ("nothing_to_undo", 409)


def test_depth_limits_each_file(root: Path) -> None:
    (root / "a.txt").write_bytes(b"0\n")
    (root / "b.txt").write_bytes(b"b\n")
    history = UndoHistory(root, depth=2)
    for n in range(1, 5):
        history.record(ops.str_replace(root, "a.txt", str(n - 1), str(n)))
    history.record(ops.str_replace(root, "b.txt", "b", "B"))
    assert history.available("a.txt") == 2
    assert history.available("b.txt") == 1
    history.undo("a.txt")
    history.undo("a.txt")
    assert (root / "a.txt").read_bytes() == b"2\n"
    with pytest.raises(NothingToUndo):
        history.undo("a.txt")
    history.undo("b.txt")
    assert (root / "b.txt").read_bytes() == b"b\n"


def test_paths_are_normalised(root: Path) -> None:
    (root / "d").mkdir()
    (root / "d" / "a.txt").write_bytes(b"x\n")
    history = UndoHistory(root)
    history.record(ops.str_replace(root, "d/../d/a.txt", "x", "y"))
    assert history.available("d/a.txt") == 1
    history.undo("./d/a.txt")
    assert (root / "d" / "a.txt").read_bytes() == b"x\n"


def test_serialisable_round_trip(root: Path) -> None:
    (root / "a.txt").write_bytes(b"1\n")
    history = UndoHistory(root, depth=5)
    history.record(ops.str_replace(root, "a.txt", "1", "2"))
    history.record(ops.str_replace(root, "a.txt", "2", "3"))
    history.record(ops.create(root, "new.txt", "n"))
    items = history.to_list()
    assert items == [("a.txt", b"1\n"), ("a.txt", b"2\n"), ("new.txt", None)]

    restored = UndoHistory.from_list(root, items, depth=5)
    restored.undo("a.txt")
    assert (root / "a.txt").read_bytes() == b"2\n"
    restored.undo("new.txt")
    assert not (root / "new.txt").exists()


def test_depth_must_be_positive(root: Path) -> None:
    with pytest.raises(ValueError, match="depth"):
        UndoHistory(root, depth=0)

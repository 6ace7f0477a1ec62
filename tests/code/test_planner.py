"""The in-memory planner follows the rules of ``ymera.code.ops`` byte for byte: the same
results and the same typed errors, for proposals and bulk edits."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ymera.code import ops
from ymera.code.errors import (
    AlreadyExists,
    EditorError,
    FileNotFound,
    InvalidText,
    NotAFile,
    OutsideWorkspace,
)
from ymera.code.paths import relative_key, resolve_inside
from ymera.code.planner import Plan

MAX = 10_000
counter = itertools.count()


def planner(root: Path) -> Plan:
    def resolve(path: str) -> tuple[Path, str]:
        target = resolve_inside(root, path)
        return target, relative_key(root, target)

    return Plan(resolve, max_bytes=MAX)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        fn()
    except EditorError as exc:
        return "error", (type(exc).__name__, exc.code, exc.details)
    return "ok", None


def compare(
    tmp_path: Path,
    content: bytes | None,
    disk_op: Callable[[Path], Any],
    plan_op: Callable[[Plan], Any],
) -> None:
    """Run one operation on disk (ops) and in memory (planner) from the same file."""
    base = tmp_path / f"case{next(counter)}"
    disk, memory = base / "disk", base / "memory"
    for root in (disk, memory):
        root.mkdir(parents=True)
        if content is not None:
            (root / "f.txt").write_bytes(content)
    plan = planner(memory)
    got_disk = outcome(lambda: disk_op(disk))
    got_plan = outcome(lambda: plan_op(plan))
    assert got_plan == got_disk
    if got_disk[0] == "ok":
        changes = plan.changes()
        after = (disk / "f.txt").read_bytes() if (disk / "f.txt").exists() else None
        if after == content:
            assert changes == []
        else:
            assert [(c.path, c.before, c.after) for c in changes] == [("f.txt", content, after)]


REPLACE_CASES = [
    (b"a\r\nb\r\nc\r\n", "b\nc", "X\nY"),  # LF text in a CRLF file
    (b"a\r\nb\nc\r\n", "b\nc", "X"),  # mixed: no translation (not found)
    (b"\tx = 1\n\ty = 2\n", "\ty = 2", "\ty = 3\n\tz = 4"),
    (b"dup\ndup\n", "dup", "x"),  # ambiguous
    (b"aaa", "aa", "b"),  # overlapping matches: ambiguous
    (b"abc", "abc", "abc"),  # no-op
    (b"abc", " \n", "x"),  # empty old string
    (b"abc", "zzz", "x"),  # not found
    ("caf\u00e9\n".encode("latin-1"), "caf\u00e9", "th\u00e9"),  # latin-1 kept
    (b"\xef\xbb\xbfbom\n", "bom", "BOM"),  # BOM kept
    ("\ufeffutf16\n".encode("utf-16-le"), "utf16", "UTF16"),
    (b"\x00\x01binary", "bin", "x"),
    (b"end without newline", "newline", "NL"),
]


@pytest.mark.parametrize(("content", "old", "new"), REPLACE_CASES)
def test_str_replace_matches_ops(tmp_path: Path, content: bytes, old: str, new: str) -> None:
    compare(
        tmp_path,
        content,
        lambda root: ops.str_replace(root, "f.txt", old, new, max_bytes=MAX),
        lambda plan: plan.str_replace("f.txt", old, new),
    )


INSERT_CASES = [
    (b"a\r\nb\r\n", 1, "x\ny"),
    (b"a\nb", 2, "tail"),  # after a last line without newline
    (b"a\nb", 0, "head\n"),
    (b"", 0, "only"),
    (b"a\rb\r", 1, "mac"),
    (b"a\n", 5, "x"),  # out of range
]


@pytest.mark.parametrize(("content", "line", "text"), INSERT_CASES)
def test_insert_matches_ops(tmp_path: Path, content: bytes, line: int, text: str) -> None:
    compare(
        tmp_path,
        content,
        lambda root: ops.insert(root, "f.txt", line, text, max_bytes=MAX),
        lambda plan: plan.insert("f.txt", line, text),
    )


def test_create_matches_ops(tmp_path: Path) -> None:
    compare(
        tmp_path,
        None,
        lambda root: ops.create(root, "f.txt", "new\r\n", max_bytes=MAX),
        lambda plan: plan.create("f.txt", "new\r\n"),
    )
    compare(
        tmp_path,
        b"there",
        lambda root: ops.create(root, "f.txt", "x", max_bytes=MAX),
        lambda plan: plan.create("f.txt", "x"),
    )
    compare(
        tmp_path,
        None,
        lambda root: ops.create(root, "f.txt", "x" * (MAX + 1), max_bytes=MAX),
        lambda plan: plan.create("f.txt", "x" * (MAX + 1)),
    )


@pytest.mark.parametrize("bad", [chr(0xD800), chr(0xDC80)])
def test_lone_surrogates_refused_alike(tmp_path: Path, bad: str) -> None:
    for content, disk_op, plan_op in [
        (
            None,
            lambda root: ops.create(root, "f.txt", bad, max_bytes=MAX),
            lambda plan: plan.create("f.txt", bad),
        ),
        (
            b"x\n",
            lambda root: ops.create(root, "f.txt", bad, max_bytes=MAX),
            lambda plan: plan.create("f.txt", bad),
        ),
        (
            b"x\n",
            lambda root: ops.str_replace(root, "f.txt", "x", bad, max_bytes=MAX),
            lambda plan: plan.str_replace("f.txt", "x", bad),
        ),
        (
            b"x\n",
            lambda root: ops.str_replace(root, "f.txt", bad, "x", max_bytes=MAX),
            lambda plan: plan.str_replace("f.txt", bad, "x"),
        ),
        (
            None,
            lambda root: ops.insert(root, "f.txt", 0, bad, max_bytes=MAX),
            lambda plan: plan.insert("f.txt", 0, bad),
        ),
    ]:
        compare(tmp_path, content, disk_op, plan_op)
    plan = planner(tmp_path)
    (tmp_path / "w.txt").write_bytes(b"w\n")
    with pytest.raises(InvalidText):
        plan.write("w.txt", bad)


def test_path_below_a_file_is_not_found_alike(tmp_path: Path) -> None:
    compare(
        tmp_path,
        b"x\n",
        lambda root: ops.str_replace(root, "f.txt/below", "x", "y", max_bytes=MAX),
        lambda plan: plan.str_replace("f.txt/below", "x", "y"),
    )
    compare(
        tmp_path,
        b"x\n",
        lambda root: ops.insert(root, "f.txt/below", 0, "y", max_bytes=MAX),
        lambda plan: plan.insert("f.txt/below", 0, "y"),
    )


texts = st.lists(
    st.sampled_from(["a", "b", "\t", " ", "\n", "\r\n", "\r", "\u00e9", "x y"]), max_size=12
).map("".join)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=texts, old=texts, new=texts, line=st.integers(0, 6), text=texts)
def test_random_edits_match_ops(
    tmp_path: Path, content: str, old: str, new: str, line: int, text: str
) -> None:
    data = content.encode()
    compare(
        tmp_path,
        data,
        lambda root: ops.str_replace(root, "f.txt", old, new, max_bytes=MAX),
        lambda plan: plan.str_replace("f.txt", old, new),
    )
    compare(
        tmp_path,
        data,
        lambda root: ops.insert(root, "f.txt", line, text, max_bytes=MAX),
        lambda plan: plan.insert("f.txt", line, text),
    )


def test_operations_chain_in_memory_and_nothing_touches_disk(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"one\r\ntwo\r\n")
    (tmp_path / "dir").mkdir()
    plan = planner(tmp_path)
    plan.str_replace("a.txt", "one", "1")
    plan.insert("./a.txt", 2, "three")
    plan.create("new/deep.txt", "n")
    plan.write("w.txt", "w")
    plan.write("w.txt", "ww")
    plan.create("gone.txt", "g")
    plan.delete("gone.txt")
    assert [(c.path, c.before, c.after) for c in plan.changes()] == [
        ("a.txt", b"one\r\ntwo\r\n", b"1\r\ntwo\r\nthree\r\n"),
        ("new/deep.txt", None, b"n"),
        ("w.txt", None, b"ww"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "dir"]
    with pytest.raises(AlreadyExists):
        plan.create("dir", "x")
    with pytest.raises(NotAFile):
        plan.create("a.txt/below", "x")
    with pytest.raises(NotAFile):
        plan.create("new/deep.txt/below", "x")
    with pytest.raises(AlreadyExists):
        plan.create("new", "x")  # a directory the plan creates
    with pytest.raises(FileNotFound):
        plan.delete("gone.txt")
    with pytest.raises(OutsideWorkspace):
        plan.create("../escape.txt", "x")

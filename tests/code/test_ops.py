"""view, create, str_replace and insert: semantics, errors, and exact bytes kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ymera.code import ops
from ymera.code.errors import (
    AlreadyExists,
    Ambiguous,
    BinaryFile,
    EditConflict,
    EmptyOldString,
    FileNotFound,
    InvalidText,
    NoOp,
    NotAFile,
    OldStringNotFound,
    OutOfRange,
    OutsideWorkspace,
    TooLarge,
)
from ymera.code.textfile import sha256_hex


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def put(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- view ---------------------------------------------------------------------------------


def test_view_numbers_lines(root: Path) -> None:
    put(root, "a.py", b"one\n\ttwo\r\nthree")
    result = ops.view(root, "a.py")
    assert result.kind == "file"
    assert result.content == "     1\tone\n     2\t\ttwo\n     3\tthree"
    assert result.total_lines == 3
    assert result.sha256 == sha256_hex(b"one\n\ttwo\r\nthree")


def test_view_range(root: Path) -> None:
    put(root, "a.txt", b"".join(b"line %d\n" % n for n in range(1, 11)))
    assert ops.view(root, "a.txt", [3, 4]).content == "     3\tline 3\n     4\tline 4"
    assert ops.view(root, "a.txt", [9, -1]).content == "     9\tline 9\n    10\tline 10"
    assert ops.view(root, "a.txt", [10, 10]).content == "    10\tline 10"


@pytest.mark.parametrize("bad", [[0, 2], [11, -1], [3, 2], [1, 11], [5, -2], [1], [1, 2, 3]])
def test_view_range_checked(root: Path, bad: list[int]) -> None:
    put(root, "a.txt", b"x\n" * 10)
    with pytest.raises(OutOfRange) as info:
        ops.view(root, "a.txt", bad)
    assert (info.value.code, info.value.status_code) == ("out_of_range", 422)


def test_view_range_on_empty_file(root: Path) -> None:
    put(root, "empty.txt", b"")
    assert ops.view(root, "empty.txt").content == ""
    with pytest.raises(OutOfRange):
        ops.view(root, "empty.txt", [1, -1])


def test_view_directory_two_levels_skipping_hidden(root: Path) -> None:
    put(root, "README.md", b"r")
    put(root, "src/pkg/deep/too_deep.py", b"")
    put(root, "src/pkg/mod.py", b"")
    put(root, "src/main.py", b"")
    put(root, ".git/config", b"")
    put(root, "src/.cache/x", b"")
    put(root, "docs/.hidden", b"")
    os.symlink(root.parent, root / "up")  # a symlinked dir is listed, not entered
    result = ops.view(root, "")
    assert result.kind == "directory"
    assert result.entries == [
        "README.md",
        "docs/",
        "src/",
        "src/main.py",
        "src/pkg/",
        "up",
    ]
    assert ops.view(root, "src").entries == [
        "main.py",
        "pkg/",
        "pkg/deep/",
        "pkg/mod.py",
    ]


def test_view_errors(root: Path) -> None:
    with pytest.raises(FileNotFound) as info:
        ops.view(root, "missing.txt")
    assert info.value.status_code == 404
    put(root, "blob.bin", b"\x00\x01\x02")
    with pytest.raises(BinaryFile):
        ops.view(root, "blob.bin")
    put(root, "big.txt", b"x" * 50)
    with pytest.raises(TooLarge):
        ops.view(root, "big.txt", max_bytes=10)
    with pytest.raises(OutsideWorkspace):
        ops.view(root, "../")


# --- create -------------------------------------------------------------------------------


def test_create_makes_parents(root: Path) -> None:
    result = ops.create(root, "a/b/c.txt", "hi\r\nthere")
    assert (root / "a/b/c.txt").read_bytes() == b"hi\r\nthere"
    assert (result.before_hash, result.before_bytes) == (None, None)
    assert result.after_hash == sha256_hex(b"hi\r\nthere")
    assert result.after_text == "hi\r\nthere"
    assert "new file mode" in result.diff
    assert "+++ b/a/b/c.txt" in result.diff


def test_create_refuses_to_overwrite(root: Path) -> None:
    put(root, "a.txt", b"keep")
    with pytest.raises(AlreadyExists) as info:
        ops.create(root, "a.txt", "new")
    assert (info.value.code, info.value.status_code) == ("exists", 409)
    assert (root / "a.txt").read_bytes() == b"keep"
    with pytest.raises(AlreadyExists):
        ops.create(root, "", "x")  # the root directory itself


def test_create_below_a_file(root: Path) -> None:
    put(root, "a.txt", b"x")
    with pytest.raises(NotAFile):
        ops.create(root, "a.txt/b.txt", "x")


def test_create_outside(root: Path) -> None:
    with pytest.raises(OutsideWorkspace):
        ops.create(root, "../escape.txt", "x")
    os.symlink(root.parent, root / "up")
    with pytest.raises(OutsideWorkspace):
        ops.create(root, "up/escape.txt", "x")
    assert not (root.parent / "escape.txt").exists()


def test_create_too_large(root: Path) -> None:
    with pytest.raises(TooLarge):
        ops.create(root, "a.txt", "x" * 11, max_bytes=10)
    assert not (root / "a.txt").exists()


# --- str_replace --------------------------------------------------------------------------


def test_str_replace_exact(root: Path) -> None:
    put(root, "a.py", b"def f():\n\treturn 1\n")
    result = ops.str_replace(root, "a.py", "\treturn 1", "\treturn 2")
    assert (root / "a.py").read_bytes() == b"def f():\n\treturn 2\n"
    assert result.before_text == "def f():\n\treturn 1\n"
    assert result.after_text == "def f():\n\treturn 2\n"
    assert result.before_hash == sha256_hex(b"def f():\n\treturn 1\n")
    assert result.after_hash == sha256_hex(b"def f():\n\treturn 2\n")
    assert "-\treturn 1\n+\treturn 2\n" in result.diff


def test_str_replace_not_found(root: Path) -> None:
    put(root, "a.py", b"x = 1\n")
    with pytest.raises(OldStringNotFound) as info:
        ops.str_replace(root, "a.py", "y = 1", "y = 2")
    assert (info.value.code, info.value.status_code) == ("not_found", 422)
    with pytest.raises(FileNotFound) as missing:
        ops.str_replace(root, "b.py", "y", "z")
    assert (missing.value.code, missing.value.status_code) == ("not_found", 404)


def test_str_replace_ambiguous_lists_every_line(root: Path) -> None:
    put(root, "a.py", b"x = 1\ny = 2\nx = 1\n\nx = 1\n")
    with pytest.raises(Ambiguous) as info:
        ops.str_replace(root, "a.py", "x = 1", "x = 3")
    assert info.value.details["lines"] == [1, 3, 5]
    assert (info.value.code, info.value.status_code) == ("ambiguous", 422)
    assert (root / "a.py").read_bytes() == b"x = 1\ny = 2\nx = 1\n\nx = 1\n"


def test_str_replace_overlapping_matches_are_ambiguous(root: Path) -> None:
    put(root, "a.txt", b"aaa\n")
    with pytest.raises(Ambiguous) as info:
        ops.str_replace(root, "a.txt", "aa", "b")
    assert info.value.details["lines"] == [1, 1]


def test_str_replace_no_op(root: Path) -> None:
    put(root, "a.py", b"x\n")
    with pytest.raises(NoOp) as info:
        ops.str_replace(root, "a.py", "x", "x")
    assert (info.value.code, info.value.status_code) == ("no_op", 422)


@pytest.mark.parametrize("old", ["", " ", "\n", "\t \r\n"])
def test_str_replace_empty_old_string(root: Path, old: str) -> None:
    put(root, "a.py", b"x \n")
    with pytest.raises(EmptyOldString) as info:
        ops.str_replace(root, "a.py", old, "y")
    assert (info.value.code, info.value.status_code) == ("empty_old_string", 422)


def test_str_replace_crlf_file_with_lf_strings(root: Path) -> None:
    put(root, "win.txt", b"one\r\ntwo\r\nthree\r\n")
    ops.str_replace(root, "win.txt", "one\ntwo\n", "uno\ndos\nmas\n")
    assert (root / "win.txt").read_bytes() == b"uno\r\ndos\r\nmas\r\nthree\r\n"
    ops.str_replace(root, "win.txt", "mas", "m\na\ns")  # new gains lines: CRLF too
    assert (root / "win.txt").read_bytes() == b"uno\r\ndos\r\nm\r\na\r\ns\r\nthree\r\n"


def test_str_replace_crlf_file_with_crlf_strings(root: Path) -> None:
    put(root, "win.txt", b"one\r\ntwo\r\n")
    ops.str_replace(root, "win.txt", "one\r\ntwo", "1\r\n2")
    assert (root / "win.txt").read_bytes() == b"1\r\n2\r\n"


def test_str_replace_mixed_endings_match_exactly(root: Path) -> None:
    put(root, "mixed.txt", b"a\r\nb\nc\r\n")
    with pytest.raises(OldStringNotFound):
        ops.str_replace(root, "mixed.txt", "a\nb", "x")
    ops.str_replace(root, "mixed.txt", "a\r\nb\n", "A\r\nB\n")
    assert (root / "mixed.txt").read_bytes() == b"A\r\nB\nc\r\n"


@pytest.mark.parametrize("data", [b"a\nb", b"a\nb\n", b"a\r\nb", b"a\r\nb\r\n"])
def test_str_replace_keeps_final_newline_state(root: Path, data: bytes) -> None:
    put(root, "f.txt", data)
    ops.str_replace(root, "f.txt", "a", "z")
    assert (root / "f.txt").read_bytes() == b"z" + data[1:]


def test_str_replace_keeps_encoding_and_mode(root: Path) -> None:
    data = b"\xff\xfe" + "caf\u00e9\r\nbar\r\n".encode("utf-16-le")
    path = put(root, "u16.txt", data)
    path.chmod(0o640)
    ops.str_replace(root, "u16.txt", "bar", "b\u00e4r")
    assert path.read_bytes() == b"\xff\xfe" + "caf\u00e9\r\nb\u00e4r\r\n".encode("utf-16-le")
    assert path.stat().st_mode & 0o777 == 0o640
    bom8 = put(root, "bom.txt", b"\xef\xbb\xbfx\n")
    ops.str_replace(root, "bom.txt", "x", "y")
    assert bom8.read_bytes() == b"\xef\xbb\xbfy\n"


def test_str_replace_expected_hash(root: Path) -> None:
    put(root, "a.txt", b"x\n")
    with pytest.raises(EditConflict) as info:
        ops.str_replace(root, "a.txt", "x", "y", expected_hash="0" * 64)
    assert info.value.status_code == 409
    assert info.value.details["current_hash"] == sha256_hex(b"x\n")
    ops.str_replace(root, "a.txt", "x", "y", expected_hash=sha256_hex(b"x\n"))
    assert (root / "a.txt").read_bytes() == b"y\n"


def test_str_replace_on_directory_binary_symlink_out(root: Path) -> None:
    (root / "d").mkdir()
    with pytest.raises(NotAFile):
        ops.str_replace(root, "d", "x", "y")
    put(root, "b.bin", b"x\x00y")
    with pytest.raises(BinaryFile):
        ops.str_replace(root, "b.bin", "x", "y")
    (root.parent / "secret.txt").write_bytes(b"x\n")
    os.symlink(root.parent / "secret.txt", root / "link.txt")
    with pytest.raises(OutsideWorkspace):
        ops.str_replace(root, "link.txt", "x", "y")
    assert (root.parent / "secret.txt").read_bytes() == b"x\n"


def test_str_replace_leaves_no_temp_files(root: Path) -> None:
    put(root, "a.txt", b"x\n")
    ops.str_replace(root, "a.txt", "x", "y")
    assert os.listdir(root) == ["a.txt"]


# --- insert -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "line", "text", "expected"),
    [
        (b"a\nb\n", 0, "top", b"top\na\nb\n"),
        (b"a\nb\n", 1, "mid\n", b"a\nmid\nb\n"),
        (b"a\nb\n", 2, "end", b"a\nb\nend\n"),
        (b"a\nb", 2, "end", b"a\nb\nend"),  # no final newline stays absent
        (b"a\nb", 1, "mid", b"a\nmid\nb"),
        (b"a\r\nb\r\n", 1, "x\ny", b"a\r\nx\r\ny\r\nb\r\n"),  # the file's line ending
        (b"a\r\nb", 2, "c\n", b"a\r\nb\r\nc"),
        (b"", 0, "first", b"first\n"),
        (b"a\n", 1, "", b"a\n\n"),  # an empty text inserts one empty line
        (b"\tx\n", 1, "\ty", b"\tx\n\ty\n"),
    ],
)
def test_insert(root: Path, data: bytes, line: int, text: str, expected: bytes) -> None:
    put(root, "f.txt", data)
    result = ops.insert(root, "f.txt", line, text)
    assert (root / "f.txt").read_bytes() == expected
    assert result.before_bytes == data
    assert result.after_bytes == expected


@pytest.mark.parametrize("line", [-1, 3, 100])
def test_insert_out_of_range(root: Path, line: int) -> None:
    put(root, "f.txt", b"a\nb\n")
    with pytest.raises(OutOfRange) as info:
        ops.insert(root, "f.txt", line, "x")
    assert info.value.details == {"insert_line": line, "total_lines": 2}
    assert (root / "f.txt").read_bytes() == b"a\nb\n"


def test_insert_expected_hash(root: Path) -> None:
    put(root, "f.txt", b"a\n")
    with pytest.raises(EditConflict):
        ops.insert(root, "f.txt", 0, "x", expected_hash="nope")


# --- paths below a file, lone surrogates ----------------------------------------------------


def test_a_path_below_a_file_names_no_file(root: Path) -> None:
    """``a.txt/x`` (a parent is a file) is 404 ``not_found``, not an unexpected error."""
    put(root, "a.txt", b"x\n")
    for call in (
        lambda: ops.view(root, "a.txt/x"),
        lambda: ops.view(root, "a.txt/x", [1, 1]),
        lambda: ops.str_replace(root, "a.txt/x", "x", "y"),
        lambda: ops.insert(root, "a.txt/x", 0, "y"),
    ):
        with pytest.raises(FileNotFound) as info:
            call()
        assert (info.value.code, info.value.status_code) == ("not_found", 404)
        assert info.value.details == {"path": "a.txt/x"}
    assert os.listdir(root) == ["a.txt"]
    assert (root / "a.txt").read_bytes() == b"x\n"


# Outside U+DC80-U+DCFF (utf-8 refused it with a bare UnicodeEncodeError), inside it
# (surrogateescape wrote invalid UTF-8), a high surrogate, and a "pair" of two.
SURROGATES = ["\ud800", "\udc80", "\udcff", "\udbff", "\ud83d\ude00"]


@pytest.mark.parametrize("bad", SURROGATES)
def test_create_refuses_lone_surrogates(root: Path, bad: str) -> None:
    with pytest.raises(InvalidText) as info:
        ops.create(root, "a.txt", f"ok {bad} ok")
    assert (info.value.code, info.value.status_code) == ("invalid_text", 422)
    assert info.value.details == {"field": "file_text", "offset": 3}
    assert os.listdir(root) == []


@pytest.mark.parametrize("bad", SURROGATES)
def test_str_replace_and_insert_refuse_lone_surrogates(root: Path, bad: str) -> None:
    put(root, "a.txt", b"x\n")
    calls = {
        "new_str": lambda: ops.str_replace(root, "a.txt", "x", bad),
        "old_str": lambda: ops.str_replace(root, "a.txt", bad, "x"),
        "insert_text": lambda: ops.insert(root, "a.txt", 1, bad),
    }
    for field, call in calls.items():
        with pytest.raises(InvalidText) as info:
            call()
        assert info.value.code == "invalid_text"
        assert info.value.details["field"] == field
    # Checked before the file is read: a missing file is still refused for the text.
    with pytest.raises(InvalidText):
        ops.str_replace(root, "missing.txt", "x", bad)
    assert os.listdir(root) == ["a.txt"]
    assert (root / "a.txt").read_bytes() == b"x\n"


def test_utf16_file_refuses_lone_surrogates(root: Path) -> None:
    data = b"\xff\xfe" + "x\n".encode("utf-16-le")
    put(root, "u16.txt", data)
    with pytest.raises(InvalidText):
        ops.str_replace(root, "u16.txt", "x", "\udc80")
    assert (root / "u16.txt").read_bytes() == data

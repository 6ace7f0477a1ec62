"""apply_patch: strict, all files or none, exact bytes; fuzz; dry run; reports."""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ymera.code.diffs import apply_hunks, apply_patch, make_patch, parse_patch
from ymera.code.errors import BinaryFile, OutsideWorkspace, PatchFailed


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


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


TEN = b"".join(b"line %d\n" % n for n in range(1, 11))


def test_modify_report_and_exact_bytes(root: Path) -> None:
    put(root, "a.txt", TEN)
    patch = (
        "--- a/a.txt\n+++ b/a.txt\n"
        "@@ -2,3 +2,3 @@\n line 2\n-line 3\n+LINE 3\n line 4\n"
        "@@ -8,3 +8,4 @@\n line 8\n line 9\n+line 9.5\n line 10\n"
    )
    report = apply_patch(root, patch)
    assert (root / "a.txt").read_bytes() == TEN.replace(b"line 3", b"LINE 3").replace(
        b"line 9\n", b"line 9\nline 9.5\n"
    )
    (f,) = report.files
    assert (f.path, f.status, f.added, f.removed) == ("a.txt", "modified", 2, 1)
    assert (report.lines_added, report.lines_removed) == (2, 1)
    assert report.before == {"a.txt": TEN}
    assert not report.dry_run
    assert sorted(os.listdir(root)) == ["a.txt"]  # no temp, backup or journal left


def test_context_mismatch_fails_with_details(root: Path) -> None:
    put(root, "a.txt", TEN)
    patch = "--- a/a.txt\n+++ b/a.txt\n@@ -2,3 +2,3 @@\n line 2\n-line 3\n+X\n line 40\n"
    with pytest.raises(PatchFailed) as info:
        apply_patch(root, patch)
    err = info.value
    assert (err.code, err.status_code) == ("patch_failed", 422)
    assert err.details["file"] == "a.txt"
    assert err.details["hunk"] == "@@ -2,3 +2,3 @@"
    assert err.details["line"] == 2
    assert err.details["expected"] == ["line 2\n", "line 3\n", "line 40\n"]
    assert err.details["found"] == ["line 2\n", "line 3\n", "line 4\n"]
    assert (root / "a.txt").read_bytes() == TEN


def test_offset_refused_without_fuzz_accepted_with(root: Path) -> None:
    put(root, "a.txt", b"new first line\n" + TEN)
    patch = "--- a/a.txt\n+++ b/a.txt\n@@ -2,3 +2,3 @@\n line 2\n-line 3\n+X\n line 4\n"
    with pytest.raises(PatchFailed):
        apply_patch(root, patch)
    apply_patch(root, patch, fuzz=1)
    assert b"line 2\nX\nline 4\n" in (root / "a.txt").read_bytes()


# --- offsets: a hunk may move, but only with every line matching ---------------------------

SHIFTED = b"new 1\nnew 2\n" + TEN
MID_HUNK = "--- a/a.txt\n+++ b/a.txt\n@@ -4,3 +4,3 @@\n line 4\n-line 5\n+FIVE\n line 6\n"


def test_offsets_move_a_hunk_only_when_asked(root: Path) -> None:
    put(root, "a.txt", SHIFTED)
    with pytest.raises(PatchFailed):  # strict by default
        apply_patch(root, MID_HUNK)
    with pytest.raises(PatchFailed):
        apply_patch(root, MID_HUNK, offsets=False)
    assert (root / "a.txt").read_bytes() == SHIFTED
    report = apply_patch(root, MID_HUNK, offsets=True)
    assert (root / "a.txt").read_bytes() == SHIFTED.replace(b"line 5\n", b"FIVE\n")
    assert (report.lines_added, report.lines_removed) == (1, 1)


def test_offsets_never_drop_context(root: Path) -> None:
    put(root, "a.txt", SHIFTED)
    edge = MID_HUNK.replace(" line 6\n", " line six\n")
    with pytest.raises(PatchFailed) as info:
        apply_patch(root, edge, offsets=True)
    assert info.value.details["line"] == 4  # reported where the header says
    apply_patch(root, edge, fuzz=1)  # fuzz, by contrast, may drop an edge line
    assert b"FIVE\n" in (root / "a.txt").read_bytes()


def test_offsets_take_the_nearest_match_the_later_on_a_tie() -> None:
    (fp,) = parse_patch("--- a/f\n+++ b/f\n@@ -5,3 +5,3 @@\n ctx\n-old\n+new\n end\n")
    block = "ctx\nold\nend\n"
    text = block + "x\n" * 5 + block + "x\n" * 2 + block + "x\n"
    # Matches at lines 1, 9 and 14; the hunk says 5: lines 1 and 9 are both 4 away.
    got = apply_hunks(text, fp.hunks, offsets=True, path="f")
    assert got.split("\n").index("new") == 9  # line 10: the later of the two nearest
    nearer = "x\n" + text  # now lines 2, 10 and 15: line 2 is nearest
    got = apply_hunks(nearer, fp.hunks, offsets=True, path="f")
    assert got.split("\n").index("new") == 2


def test_offsets_carry_to_later_hunks_which_stay_in_order(root: Path) -> None:
    put(root, "a.txt", SHIFTED)
    patch = (
        "--- a/a.txt\n+++ b/a.txt\n"
        "@@ -3,3 +3,3 @@\n line 3\n-line 4\n+FOUR\n line 5\n"
        "@@ -7,3 +7,3 @@\n line 7\n-line 8\n+EIGHT\n line 9\n"
    )
    report = apply_patch(root, patch, offsets=True, dry_run=True)
    assert report.after["a.txt"] == SHIFTED.replace(b"line 4\n", b"FOUR\n").replace(
        b"line 8\n", b"EIGHT\n"
    )
    assert (root / "a.txt").read_bytes() == SHIFTED  # a dry run
    # A second hunk whose only match lies before the first one's is not found.
    backwards = (
        "--- a/a.txt\n+++ b/a.txt\n"
        "@@ -7,3 +7,3 @@\n line 7\n-line 8\n+EIGHT\n line 9\n"
        "@@ -12,3 +12,3 @@\n line 1\n-line 2\n+TWO\n line 3\n"
    )
    with pytest.raises(PatchFailed) as info:
        apply_patch(root, backwards, offsets=True)
    assert info.value.details["hunk"] == "@@ -12,3 +12,3 @@"


def test_offsets_keep_git_apply_anchors(root: Path) -> None:
    """A hunk at line 1 matches only at the top, one without trailing context only at
    the end, one without any context only where it says (git apply's rules)."""
    put(root, "a.txt", SHIFTED)
    top = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n-line 1\n+ONE\n line 2\n"
    no_context = "--- a/a.txt\n+++ b/a.txt\n@@ -5 +5 @@\n-line 5\n+FIVE\n"
    for patch in (top, no_context):
        with pytest.raises(PatchFailed):
            apply_patch(root, patch, offsets=True)
    put(root, "b.txt", TEN + b"extra\n")
    at_end = "--- a/b.txt\n+++ b/b.txt\n@@ -9,2 +9,3 @@\n line 9\n line 10\n+line 11\n"
    with pytest.raises(PatchFailed):  # "line 10" is no longer the last line
        apply_patch(root, at_end, offsets=True)
    put(root, "c.txt", b"new\n" + TEN)
    apply_patch(root, at_end.replace("b.txt", "c.txt"), offsets=True)
    assert (root / "c.txt").read_bytes() == b"new\n" + TEN + b"line 11\n"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_offsets_agree_with_git_apply(tmp_path: Path) -> None:
    """Every change of a 15-line file, in a copy shifted down (lines added above) and/or
    grown (lines added below): applied with offsets, or refused, exactly as git does."""
    before = "".join(f"line {n}\n" for n in range(1, 16))
    outcomes = set()
    for line in range(1, 16):
        for kind in ("replace", "delete", "append"):
            old = f"line {line}\n"
            new = {"replace": f"LINE {line}\nextra\n", "delete": "", "append": old + "more\n"}
            patch = make_patch([("f.txt", "f.txt", before, before.replace(old, new[kind]))])
            (fp,) = parse_patch(patch)
            (tmp_path / "p.diff").write_text(patch)
            for shift, tail in itertools.product((0, 1, 3), (0, 2)):
                target = "".join(f"pre {n}\n" for n in range(shift)) + before
                target += "".join(f"post {n}\n" for n in range(tail))
                try:
                    ours: str | None = apply_hunks(target, fp.hunks, offsets=True, path="f.txt")
                except PatchFailed:
                    ours = None
                (tmp_path / "f.txt").write_text(target)
                done = subprocess.run(
                    ["git", "apply", "p.diff"], cwd=tmp_path, capture_output=True, check=False
                )
                theirs = (tmp_path / "f.txt").read_text() if done.returncode == 0 else None
                assert ours == theirs, (line, kind, shift, tail, done.stderr)
                outcomes.add((ours is None, shift > 0))
    assert outcomes == {(False, False), (False, True), (True, True), (True, False)}


def test_fuzz_ignores_edge_context(root: Path) -> None:
    put(root, "a.txt", TEN)
    patch = "--- a/a.txt\n+++ b/a.txt\n@@ -2,3 +2,3 @@\n line two\n-line 3\n+X\n line 4\n"
    with pytest.raises(PatchFailed):
        apply_patch(root, patch, fuzz=0)
    apply_patch(root, patch, fuzz=1)
    assert (root / "a.txt").read_bytes() == TEN.replace(b"line 3\n", b"X\n")


def test_fuzz_carries_the_offset_to_later_hunks(root: Path) -> None:
    put(root, "a.txt", b"x\ny\nz\n" + TEN)
    patch = (
        "--- a/a.txt\n+++ b/a.txt\n"
        "@@ -1,2 +1,2 @@\n-line 1\n+ONE\n line 2\n"
        "@@ -9,2 +9,2 @@\n line 9\n-line 10\n+TEN\n"
    )
    report = apply_patch(root, patch, dry_run=True, fuzz=1)
    assert report.after["a.txt"] == b"x\ny\nz\n" + TEN.replace(b"line 1\n", b"ONE\n", 1).replace(
        b"line 10\n", b"TEN\n"
    )


def test_negative_fuzz_is_refused(root: Path) -> None:
    with pytest.raises(ValueError, match="fuzz"):
        apply_patch(root, "--- a/a\n+++ b/a\n@@ -1 +1 @@\n-a\n+b\n", fuzz=-1)


def test_fuzz_never_ignores_removed_lines(root: Path) -> None:
    put(root, "a.txt", TEN)
    patch = "--- a/a.txt\n+++ b/a.txt\n@@ -2,3 +2,3 @@\n line 2\n-line three\n+X\n line 4\n"
    with pytest.raises(PatchFailed):
        apply_patch(root, patch, fuzz=3)


def test_all_or_nothing_across_files(root: Path) -> None:
    put(root, "a.txt", b"a\n")
    put(root, "b.txt", b"b\n")
    before = snapshot(root)
    patch = (
        "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+A\n"
        "--- /dev/null\n+++ b/c.txt\n@@ -0,0 +1 @@\n+c\n"
        "--- a/b.txt\n+++ b/b.txt\n@@ -1 +1 @@\n-nope\n+B\n"
    )
    with pytest.raises(PatchFailed) as info:
        apply_patch(root, patch)
    assert info.value.details["file"] == "b.txt"
    assert snapshot(root) == before


def test_second_hunk_failure_writes_nothing(root: Path) -> None:
    put(root, "a.txt", TEN)
    patch = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-line 1\n+ONE\n@@ -9 +9 @@\n-line 99\n+NINE\n"
    with pytest.raises(PatchFailed) as info:
        apply_patch(root, patch)
    assert info.value.details["hunk"] == "@@ -9 +9 @@"
    assert (root / "a.txt").read_bytes() == TEN


def test_dry_run_writes_nothing(root: Path) -> None:
    put(root, "a.txt", b"a\n")
    before = snapshot(root)
    patch = (
        "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1,2 @@\n a\n+b\n"
        "--- /dev/null\n+++ b/new/c.txt\n@@ -0,0 +1,2 @@\n+c\n+d\n"
    )
    report = apply_patch(root, patch, dry_run=True)
    assert report.dry_run
    assert [(f.path, f.status) for f in report.files] == [
        ("a.txt", "modified"),
        ("new/c.txt", "added"),
    ]
    assert (report.lines_added, report.lines_removed) == (3, 0)
    assert report.after == {"a.txt": b"a\nb\n", "new/c.txt": b"c\nd\n"}
    assert snapshot(root) == before
    assert sorted(os.listdir(root)) == ["a.txt"]


def test_new_deleted_renamed(root: Path) -> None:
    put(root, "gone.txt", b"x\ny\n")
    put(root, "old/name.txt", b"1\n2\n3\n")
    (root / "old/name.txt").chmod(0o754)
    patch = (
        "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n"
        "--- a/gone.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-x\n-y\n"
        "diff --git a/made.sh b/made.sh\nnew file mode 100755\n"
        "--- /dev/null\n+++ b/made.sh\n@@ -0,0 +1 @@\n+#!/bin/sh\n"
        "diff --git a/old/name.txt b/new/name.txt\nsimilarity index 80%\n"
        "rename from old/name.txt\nrename to new/name.txt\n"
        "--- a/old/name.txt\n+++ b/new/name.txt\n@@ -2 +2 @@\n-2\n+two\n"
    )
    report = apply_patch(root, patch)
    assert snapshot(root) == {"made.sh": b"#!/bin/sh\n", "new/name.txt": b"1\ntwo\n3\n"}
    assert stat.S_IMODE((root / "new/name.txt").stat().st_mode) == 0o754
    assert (root / "made.sh").stat().st_mode & stat.S_IXUSR
    assert [(f.path, f.status, f.old_path) for f in report.files] == [
        ("gone.txt", "deleted", None),
        ("made.sh", "added", None),
        ("new/name.txt", "renamed", "old/name.txt"),
    ]
    assert report.before["old/name.txt"] == b"1\n2\n3\n"
    assert report.after["old/name.txt"] is None


def test_structural_refusals(root: Path) -> None:
    put(root, "here.txt", b"h\n")
    put(root, "full.txt", b"a\nb\n")
    cases = {
        "--- /dev/null\n+++ b/here.txt\n@@ -0,0 +1 @@\n+x\n": "already exists",
        "--- a/missing.txt\n+++ b/missing.txt\n@@ -1 +1 @@\n-a\n+b\n": "does not exist",
        "diff --git a/full.txt b/full.txt\ndeleted file mode 100644\n"
        "--- a/full.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n": "does not remove all",
        "diff --git a/full.txt b/here.txt\nrename from full.txt\nrename to here.txt\n": (
            "onto an existing file"
        ),
    }
    for patch, reason in cases.items():
        with pytest.raises(PatchFailed, match=reason):
            apply_patch(root, patch)
    assert snapshot(root) == {"full.txt": b"a\nb\n", "here.txt": b"h\n"}


def test_paths_confined_and_binary_refused(root: Path) -> None:
    with pytest.raises(OutsideWorkspace):
        apply_patch(root, "--- /dev/null\n+++ b/../evil.txt\n@@ -0,0 +1 @@\n+x\n")
    assert not (root.parent / "evil.txt").exists()
    put(root, "b.bin", b"\x00\x01")
    with pytest.raises(BinaryFile):
        apply_patch(root, "--- a/b.bin\n+++ b/b.bin\n@@ -1 +1 @@\n-a\n+b\n")


def test_crlf_file_bytes_exact(root: Path) -> None:
    put(root, "win.txt", b"one\r\ntwo\r\nthree\r\n")
    patch = "--- a/win.txt\n+++ b/win.txt\n@@ -1,3 +1,3 @@\n one\r\n-two\r\n+2\r\n three\r\n"
    apply_patch(root, patch)
    assert (root / "win.txt").read_bytes() == b"one\r\n2\r\nthree\r\n"
    lf_patch = "--- a/win.txt\n+++ b/win.txt\n@@ -1,3 +1,3 @@\n one\n-2\n+two\n three\n"
    with pytest.raises(PatchFailed) as info:  # strict: an LF patch does not match CRLF
        apply_patch(root, lf_patch)
    assert info.value.details["found"] == ["one\r\n", "2\r\n", "three\r\n"]


def test_no_newline_markers(root: Path) -> None:
    put(root, "f.txt", b"a\nb")
    add_newline = (
        "--- a/f.txt\n+++ b/f.txt\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"
    )
    apply_patch(root, add_newline)
    assert (root / "f.txt").read_bytes() == b"a\nb\n"
    with pytest.raises(PatchFailed):  # the file now ends with a newline: no longer matches
        apply_patch(root, add_newline)
    drop_newline = "--- a/f.txt\n+++ b/f.txt\n@@ -2 +2 @@\n-b\n+c\n\\ No newline at end of file\n"
    apply_patch(root, drop_newline)
    assert (root / "f.txt").read_bytes() == b"a\nc"


def test_utf16_file_keeps_encoding(root: Path) -> None:
    put(root, "u.txt", b"\xff\xfe" + "x\r\ny\r\n".encode("utf-16-le"))
    apply_patch(root, "--- a/u.txt\n+++ b/u.txt\n@@ -2 +2 @@\n-y\r\n+\u00fc\r\n")
    assert (root / "u.txt").read_bytes() == b"\xff\xfe" + "x\r\n\u00fc\r\n".encode("utf-16-le")


def test_same_file_twice_in_one_patch(root: Path) -> None:
    put(root, "a.txt", b"1\n2\n")
    patch = (
        "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-1\n+one\n"
        "--- a/a.txt\n+++ b/a.txt\n@@ -2 +2 @@\n-2\n+two\n"
    )
    apply_patch(root, patch)
    assert (root / "a.txt").read_bytes() == b"one\ntwo\n"


def test_custom_journal_dir_is_left_empty(root: Path, tmp_path: Path) -> None:
    put(root, "a.txt", b"a\n")
    journal = tmp_path / "journal"
    apply_patch(root, "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+b\n", journal_dir=journal)
    assert list(journal.iterdir()) == []
    assert sorted(os.listdir(root)) == ["a.txt"]


# --- round trips --------------------------------------------------------------------------

_line = st.text(alphabet="ab \t\u00e9", max_size=4).flatmap(
    lambda body: st.sampled_from([body + "\n", body + "\r\n", body + "\r"])
)
_texts = st.tuples(st.lists(_line, max_size=12), st.text(alphabet="ab\r", max_size=3)).map(
    lambda parts: "".join(parts[0]) + parts[1]
)


@settings(max_examples=150, deadline=None)
@given(before=_texts, after=_texts, context=st.integers(min_value=0, max_value=4))
def test_make_then_apply_round_trip(before: str, after: str, context: int) -> None:
    patch = make_patch([("f", "f", before, after)], context=context)
    if before == after:
        assert patch == ""
        return
    (fp,) = parse_patch(patch)
    assert apply_hunks(before, fp.hunks, path="f") == after


def test_make_patch_identical_is_empty() -> None:
    assert make_patch([("a", "a", "x\n", "x\n")]) == ""

"""Parsing unified diffs: git headers, plain patches, markers, and malformed input."""

from __future__ import annotations

import pytest

from ymera.code.errors import InvalidPatch
from ymera.code.gitquote import git_names, quote_path, unquote_path
from ymera.code.patchparse import parse_patch

GIT_PATCH = (
    """\
From 1234 Mon Sep 17 00:00:00 2001
Subject: [PATCH] several kinds of change

diff --git a/src/app.py b/src/app.py
index 83db48f..bf269f4 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,3 +1,3 @@ def main():
 one
-two
+TWO
 three
@@ -10,2 +10,3 @@
 ten
 eleven
+twelve
diff --git a/new.txt b/new.txt
new file mode 100755
index 0000000..e69de29
--- /dev/null
+++ b/new.txt
@@ -0,0 +1 @@
+hello
\\ No newline at end of file
diff --git a/old.txt b/old.txt
deleted file mode 100644
--- a/old.txt
+++ /dev/null
@@ -1,2 +0,0 @@
-a
-b
diff --git a/from.txt b/to.txt
similarity index 90%
rename from from.txt
rename to to.txt
index 1111111..2222222 100644
--- a/from.txt
+++ b/to.txt
@@ -1 +1 @@
-x
+y
diff --git a/pure.txt b/moved/pure.txt
similarity index 100%
rename from pure.txt
rename to moved/pure.txt
diff --git a/empty b/empty
new file mode 100644
index 0000000..e69de29
"""
    + "-- \n2.39.5\n"
)  # a format-patch signature


def test_git_patch() -> None:
    app, new, old, renamed, pure, empty = parse_patch(GIT_PATCH)
    assert (app.old_path, app.new_path) == ("src/app.py", "src/app.py")
    assert [h.header for h in app.hunks] == ["@@ -1,3 +1,3 @@ def main():", "@@ -10,2 +10,3 @@"]
    assert app.hunks[0].lines == [(" ", "one\n"), ("-", "two\n"), ("+", "TWO\n"), (" ", "three\n")]
    assert (app.hunks[1].old_start, app.hunks[1].old_count, app.hunks[1].new_count) == (10, 2, 3)
    assert (new.is_new, new.new_path, new.new_mode) == (True, "new.txt", "100755")
    assert new.hunks[0].lines == [("+", "hello")]  # no newline at end of file
    assert (old.is_deleted, old.old_path) == (True, "old.txt")
    assert renamed.is_rename
    assert (renamed.old_path, renamed.new_path) == ("from.txt", "to.txt")
    assert (pure.is_rename, pure.hunks, pure.new_path) == (True, [], "moved/pure.txt")
    assert (empty.is_new, empty.hunks) == (True, [])


def test_plain_patch_with_timestamps_and_crlf_lines() -> None:
    text = (
        "--- a/f.txt\t2024-01-01 10:00:00.000000000 +0000\n"
        "+++ b/f.txt\t2024-01-02 10:00:00.000000000 +0000\n"
        "@@ -1,2 +1,2 @@\n"
        " keep\r\n"
        "-old\r\n"
        "+new\r\n"
    )
    (fp,) = parse_patch(text)
    assert (fp.old_path, fp.new_path) == ("f.txt", "f.txt")
    assert fp.hunks[0].old_lines == ["keep\r\n", "old\r\n"]
    assert fp.hunks[0].new_lines == ["keep\r\n", "new\r\n"]


def test_plain_patch_without_prefixes_patches_the_new_name() -> None:
    text = "--- f.txt.orig\n+++ f.txt\n@@ -1 +1 @@\n-a\n+b\n"
    (fp,) = parse_patch(text)
    assert (fp.old_path, fp.new_path) == ("f.txt", "f.txt")
    (created,) = parse_patch("--- /dev/null\n+++ b/n.txt\n@@ -0,0 +1 @@\n+x\n")
    assert (created.is_new, created.new_path) == (True, "n.txt")


def test_no_newline_on_both_sides_and_empty_context_line() -> None:
    text = (
        "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n\n-b\n\\ No newline at end of file\n+c\n"
        "\\ No newline at end of file\n"
    )
    (fp,) = parse_patch(text)
    assert fp.hunks[0].lines == [(" ", "a\n"), (" ", "\n"), ("-", "b"), ("+", "c")]


def test_quoted_names() -> None:
    text = (
        'diff --git "a/t\\tb.txt" "b/t\\tb.txt"\n'
        '--- "a/t\\tb.txt"\n+++ "b/t\\tb.txt"\n@@ -1 +1 @@\n-x\n+y\n'
        'diff --git "a/\\303\\251.txt" "b/\\303\\251.txt"\n'
        "--- a/sp ace.txt\t\n+++ b/sp ace.txt\t\n@@ -1 +1 @@\n-x\n+y\n"
    )
    tab, accent = parse_patch(text)
    assert tab.new_path == "t\tb.txt"
    assert accent.new_path == "sp ace.txt"  # the ---/+++ names win


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "No file changes"),
        ("just some words\n", "No file changes"),
        ("@@ -1 +1 @@\n-a\n+b\n", "without a '---'/'\\+\\+\\+' file header"),
        ("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-a\n+b\n", "ends early"),
        ("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n-b\n+c\n", "does not match its line counts"),
        ("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n+c\n", "more lines than its header"),
        ("--- a/f\n+++ b/f\n@@ -1 +1 @\n-a\n+b\n", "malformed hunk header"),
        ("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n*b\n", "unexpected"),
        ("--- a/f\n+++ b/f\n@@ -1 +1 @@\n\\ No newline at end of file\n", "does not follow"),
        ("--- a/f\n+++ b/f\n", "no hunks"),
        ("--- /dev/null\n+++ /dev/null\n@@ -0,0 +1 @@\n+x\n", "both file names"),
        ("--- /dev/null\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n", "new file f has old lines"),
        ("--- a/f\n+++ /dev/null\n@@ -1 +1 @@\n-a\n+b\n", "deleted file f has new"),
        (
            "--- a/f\n+++ b/f\n@@ -5 +5 @@\n-a\n+b\n@@ -2 +2 @@\n-c\n+d\n",
            "overlaps the one before",
        ),
        ("diff --git a/f b/f\n--- a/f\nsomething\n", "not followed by"),
        ("diff --git a/f b/g\ncopy from f\ncopy to g\n", "copies are not supported"),
        ("diff --git a/f b/f\nGIT binary patch\nliteral 0\n", "binary patches"),
        ("diff --git a/f b/f\nindex 1..2 100644\n", "no change for f"),
        ("diff --git a/x y b/z w\n@@ -1 +1 @@\n-a\n+b\n", "cannot tell the file names"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(InvalidPatch, match=message) as info:
        parse_patch(text)
    assert (info.value.code, info.value.status_code) == ("invalid_patch", 422)


def test_hunk_error_names_the_line() -> None:
    with pytest.raises(InvalidPatch) as info:
        parse_patch("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n*b\n")
    assert info.value.details == {"line": 5}


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("plain/path.py", "plain/path.py"),
        ("sp ace.txt", "sp ace.txt"),
        ("t\tb.txt", '"t\\tb.txt"'),
        ('q"uote\\', '"q\\"uote\\\\"'),
        ("\u00e9.txt", '"\\303\\251.txt"'),
    ],
)
def test_quoting_round_trip(name: str, quoted: str) -> None:
    assert quote_path(name) == quoted
    assert unquote_path(quoted) == name


def test_git_names() -> None:
    assert git_names("a/x b/x") == ("x", "x")
    assert git_names("a/s p b/s p") == ("s p", "s p")
    assert git_names('"a/t\\tb" "b/t\\tb"') == ("t\tb", "t\tb")
    assert git_names("a/one b/two") == ("one", "two")
    assert git_names("a/x y b/z w") == (None, None)

"""make_patch output is accepted by the real ``git apply`` and gives the same bytes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ymera.code.diffs import FileChange, apply_patch, make_patch

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

BEFORE = {
    "crlf.txt": "one\r\ntwo\r\nthree\r\n",
    "no-final.txt": "a\nb",
    "tabs.py": "def f():\n\treturn 1\n\n\t# end\n",
    "gone.txt": "bye\nnow\n",
    "empty-gone": "",
    "old name.txt": "keep\nme\n",
    "mv.txt": "m1\nm2\nm3\nm4\nm5\nm6\nm7\nm8\n",
    "t\tab name.txt": "x\n",
    "caf\u00e9.txt": "caf\u00e9\n",
    "mixed.txt": "a\r\nb\nc\r\n",
    "sp ace.txt": "s\n",
}
CHANGES: list[FileChange] = [
    ("crlf.txt", "crlf.txt", BEFORE["crlf.txt"], "one\r\n2\r\nthree\r\nfour\r\n"),
    ("no-final.txt", "no-final.txt", BEFORE["no-final.txt"], "a\nB"),
    ("tabs.py", "tabs.py", BEFORE["tabs.py"], "def f():\n\treturn 2\n\n\t# end\n"),
    (None, "new/file.txt", None, "n\tew\nwithout final newline"),
    (None, "new empty", None, ""),
    ("gone.txt", None, BEFORE["gone.txt"], None),
    ("empty-gone", None, "", None),
    ("old name.txt", "new name.txt", BEFORE["old name.txt"], BEFORE["old name.txt"]),
    ("mv.txt", "sub/mv2.txt", BEFORE["mv.txt"], BEFORE["mv.txt"].replace("m7", "M7")),
    ("t\tab name.txt", "t\tab name.txt", "x\n", "x\ny\n"),
    ("caf\u00e9.txt", "caf\u00e9.txt", "caf\u00e9\n", "caf\u00e9\nlatte\n"),
    ("mixed.txt", "mixed.txt", BEFORE["mixed.txt"], "a\r\nB\nc\r\nd"),
    ("sp ace.txt", "sp ace.txt", "s\n", "s\npace\n"),
]


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-c", "core.autocrlf=false", "-c", "apply.whitespace=nowarn", *args],
        cwd=repo,
        capture_output=True,
        check=False,
    )


def populate(repo: Path) -> None:
    repo.mkdir()
    for name, text in BEFORE.items():
        (repo / name).write_bytes(text.encode())


def expected_tree() -> dict[str, bytes]:
    tree = {name: text.encode() for name, text in BEFORE.items()}
    for old, new, _, after in CHANGES:
        if old is not None:
            del tree[old]
        if new is not None:
            assert after is not None
            tree[new] = after.encode()
    return tree


def tree(repo: Path) -> dict[str, bytes]:
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }


def test_git_apply_accepts_make_patch(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    populate(repo)
    assert git(repo, "init", "-q").returncode == 0
    patch = make_patch(CHANGES)
    patch_file = tmp_path / "change.diff"
    patch_file.write_bytes(patch.encode())

    check = git(repo, "apply", "--check", "-v", str(patch_file))
    assert check.returncode == 0, check.stderr.decode()
    applied = git(repo, "apply", str(patch_file))
    assert applied.returncode == 0, applied.stderr.decode()
    assert tree(repo) == expected_tree()

    reverse = git(repo, "apply", "-R", str(patch_file))  # and it reverses cleanly
    assert reverse.returncode == 0, reverse.stderr.decode()
    assert tree(repo) == {name: text.encode() for name, text in BEFORE.items()}


def test_our_apply_matches_git(tmp_path: Path) -> None:
    repo = tmp_path / "ws"
    populate(repo)
    report = apply_patch(repo, make_patch(CHANGES))
    assert tree(repo) == expected_tree()
    assert {f.status for f in report.files} == {"added", "deleted", "modified", "renamed"}


def test_our_apply_accepts_git_diff_output(tmp_path: Path) -> None:
    """The other direction: a patch written by ``git diff`` applies with apply_patch."""
    repo = tmp_path / "repo"
    populate(repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    commit = git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    assert commit.returncode == 0, commit.stderr.decode()
    for name, text in expected_tree().items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(text)
    for old, new, _, _ in CHANGES:
        if old is not None and old != new:
            (repo / old).unlink()
    git(repo, "add", "-A")
    diff = git(repo, "diff", "--cached", "-M", "--binary").stdout.decode()

    ws = tmp_path / "ws"
    populate(ws)
    apply_patch(ws, diff)
    assert tree(ws) == expected_tree()

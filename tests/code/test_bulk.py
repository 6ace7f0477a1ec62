"""BulkWriter: all-or-nothing writes, in-process failures, and crash recovery."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ymera.code.bulk import BulkWriter, Change, Delete, Rename, Write, recover
from ymera.code.errors import (
    AlreadyExists,
    FileNotFound,
    InvalidChange,
    NotAFile,
    OutsideWorkspace,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under root, hidden ones included (directories map to None)."""
    return {
        p.relative_to(root).as_posix(): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


def test_writes_deletes_renames(root: Path, journal: Path) -> None:
    (root / "keep.sh").write_bytes(b"old\n")
    (root / "keep.sh").chmod(0o750)
    (root / "doomed.txt").write_bytes(b"x")
    (root / "moving.txt").write_bytes(b"m")
    (root / "moving.txt").chmod(0o600)
    (root / "edit-move.txt").write_bytes(b"e")
    BulkWriter(root, journal).apply(
        [
            Write("keep.sh", b"new\n"),
            Write("deep/er/new.txt", b"n"),
            Delete("doomed.txt"),
            Rename("moving.txt", "moved/here.txt"),
            Rename("edit-move.txt", "edited.txt", b"E"),
            Write("exec.sh", b"#!/bin/sh\n", mode=0o755),
        ]
    )
    assert snapshot(root) == {
        "deep": None,
        "deep/er": None,
        "deep/er/new.txt": b"n",
        "edited.txt": b"E",
        "exec.sh": b"#!/bin/sh\n",
        "keep.sh": b"new\n",
        "moved": None,
        "moved/here.txt": b"m",
    }
    assert stat.S_IMODE((root / "keep.sh").stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "moved/here.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "exec.sh").stat().st_mode) == 0o755
    assert list(journal.iterdir()) == []


def test_thousand_files_last_change_invalid_touches_nothing(root: Path, journal: Path) -> None:
    for n in range(1000):
        (root / f"f{n:04}.txt").write_bytes(b"old %d\n" % n)
    before = snapshot(root)
    changes: list[Change] = [Write(f"f{n:04}.txt", b"new %d\n" % n) for n in range(999)]
    for last, error in [
        (Write("../escape.txt", b"x"), OutsideWorkspace),
        (Delete("missing.txt"), FileNotFound),
        (Write("f0000.txt", b"twice"), InvalidChange),
        (Rename("f0999.txt", "f0998.txt"), AlreadyExists),
        (Write("f0999.txt/below", b"x"), NotAFile),
    ]:
        with pytest.raises(error):
            BulkWriter(root, journal).apply([*changes, last])
        assert snapshot(root) == before
        assert not journal.exists() or list(journal.iterdir()) == []


def test_same_file_through_two_names_is_refused(root: Path, journal: Path) -> None:
    (root / "a.txt").write_bytes(b"a")
    with pytest.raises(InvalidChange):
        BulkWriter(root, journal).apply([Write("a.txt", b"1"), Write("./x/../a.txt", b"2")])


def test_delete_of_directory_is_refused(root: Path, journal: Path) -> None:
    (root / "d").mkdir()
    with pytest.raises(NotAFile):
        BulkWriter(root, journal).apply([Delete("d")])


class Boom(Exception):
    pass


@pytest.mark.parametrize(
    ("stage", "n"), [("prepared", 0), ("staged", 0), ("committing", 0), ("replaced", 3)]
)
def test_failure_in_process_rolls_back(root: Path, journal: Path, stage: str, n: int) -> None:
    for i in range(5):
        (root / f"f{i}.txt").write_bytes(b"old %d" % i)
    (root / "doomed.txt").write_bytes(b"d")
    before = snapshot(root)

    def observer(seen: str, i: int) -> None:
        if (seen, i) == (stage, n):
            raise Boom

    changes: list[Change] = [Write(f"f{i}.txt", b"new %d" % i) for i in range(5)]
    changes += [Delete("doomed.txt"), Write("made/dir/new.txt", b"n")]
    with pytest.raises(Boom):
        BulkWriter(root, journal, observer=observer).apply(changes)
    assert snapshot(root) == before  # temps, backups and new directories gone too
    assert list(journal.iterdir()) == []


def test_failing_replace_rolls_back(
    root: Path, journal: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        (root / f"f{i}.txt").write_bytes(b"old")
    before = snapshot(root)
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if str(src).endswith(".tmp") and not str(dst).endswith(".json"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="No space"):
        BulkWriter(root, journal).apply([Write(f"f{i}.txt", b"new") for i in range(4)])
    monkeypatch.setattr(os, "replace", real_replace)
    assert snapshot(root) == before
    assert list(journal.iterdir()) == []


# --- crash recovery with a real process killed by SIGKILL ----------------------------------

CHILD = """
import sys
from pathlib import Path
from ymera.code.bulk import BulkWriter, Delete, Rename, Write

root, journal, marker = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
stage, n = sys.argv[4], int(sys.argv[5])

def mark(text):
    # Written whole, then renamed into place: the test waits for the file to
    # exist and must never read it half-written (empty).
    part = marker.with_suffix(".part")
    part.write_text(text)
    part.rename(marker)

def observer(seen, i):
    if (seen, i) == (stage, n):
        mark("paused")
        sys.stdin.read()  # blocks until the test kills us

changes = [Write(f"f{i:02}.txt", b"new %d\\n" % i) for i in range(20)]
changes += [
    Write("newdir/created.txt", b"created\\n"),
    Delete("doomed.txt"),
    Rename("moving.txt", "moved/there.txt", b"moved\\n"),
]
BulkWriter(root, journal, observer=observer).apply(changes)
mark("done")
"""
ENTRIES = 20 + 1 + 1 + 2  # a rename is a write and a delete

OLD: dict[str, bytes | None] = {
    **{f"f{i:02}.txt": b"old %d\n" % i for i in range(20)},
    "doomed.txt": b"doomed\n",
    "moving.txt": b"moving\n",
}
NEW: dict[str, bytes | None] = {
    **{f"f{i:02}.txt": b"new %d\n" % i for i in range(20)},
    "newdir": None,
    "newdir/created.txt": b"created\n",
    "moved": None,
    "moved/there.txt": b"moved\n",
}


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited {proc.returncode}: {log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"child never reached the pause point: {log.read_text()}")
        time.sleep(0.01)  # polling interval, not synchronisation


@pytest.mark.parametrize(
    ("stage", "n", "expected"),
    [
        ("prepared", 0, "old"),
        ("staged", 0, "old"),
        ("replaced", 1, "old"),
        ("replaced", ENTRIES // 2, "old"),
        ("replaced", ENTRIES, "old"),
        ("committed", ENTRIES, "new"),
    ],
)
def test_sigkill_then_recover_is_all_or_nothing(
    tmp_path: Path, root: Path, journal: Path, stage: str, n: int, expected: str
) -> None:
    for name, data in OLD.items():
        assert data is not None
        (root / name).write_bytes(data)
    script, marker, log = tmp_path / "child.py", tmp_path / "marker", tmp_path / "child.log"
    script.write_text(CHILD)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(root), str(journal), str(marker), stage, str(n)],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_file(marker, proc, log)
        assert marker.read_text() == "paused"
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.stdin is not None
        proc.stdin.close()

    assert len(list(journal.glob("*.json"))) == 1  # the crash left its journal
    report = recover(root, journal)
    assert snapshot(root) == (OLD if expected == "old" else NEW)
    assert list(journal.iterdir()) == []
    assert len(report.rolled_back if expected == "old" else report.completed) == 1
    again = recover(root, journal)  # idempotent
    assert (again.rolled_back, again.completed) == ([], [])
    assert snapshot(root) == (OLD if expected == "old" else NEW)


def test_recover_without_journals(root: Path, journal: Path) -> None:
    assert recover(root, journal).rolled_back == []
    journal.mkdir()
    (journal / ".abc.json.1234.tmp").write_text("{half")  # a half-written journal
    assert recover(root, journal).rolled_back == []
    assert list(journal.iterdir()) == []


def test_recover_skips_unreadable_and_foreign_journals(
    tmp_path: Path, root: Path, journal: Path
) -> None:
    journal.mkdir()
    (journal / "bad.json").write_text("{not json")
    other = tmp_path / "other"
    other.mkdir()
    (journal / "foreign.json").write_text(
        json.dumps(
            {
                "version": 1,
                "root": str(other.resolve()),
                "state": "committing",
                "dirs": [],
                "entries": [],
            }
        )
    )
    (journal / "escape.json").write_text(
        json.dumps(
            {
                "version": 1,
                "root": str(root.resolve()),
                "state": "committing",
                "dirs": [],
                "entries": [
                    {
                        "target": str(tmp_path / "victim.txt"),
                        "action": "write",
                        "existed": False,
                        "temp": None,
                        "backup": None,
                    }
                ],
            }
        )
    )
    (tmp_path / "victim.txt").write_text("safe")
    report = recover(root, journal)
    assert set(report.skipped) == {"bad", "foreign", "escape"}
    assert (tmp_path / "victim.txt").read_text() == "safe"

"""Edits over HTTP: the text-editor operations and their exact errors, undo (across a
restart), patches, all-or-nothing bulk edits and crash recovery, the review flow,
rebase, revert, sessions, and diffs that ``git apply`` accepts; on every backend."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.code.api_helpers import (
    another_app,
    cheap_passwords,  # noqa: F401  (autouse fixture)
    create_workspace,
    editor,
    events_of,
    get,
    git,
    ok_editor,
    post,
    problem,
    root_of,
)
from tests.conftest import AppHarness
from ymera.auth.permissions import Role

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def workspace_with(h: AppHarness, files: dict[str, bytes]) -> tuple[str, Path]:
    ws = await create_workspace(h)
    root = root_of(h, ws["id"])
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return ws["id"], root


async def test_editor_operations_keep_crlf_tabs_and_record_edits(harness: AppHarness) -> None:
    ws_id, root = await workspace_with(
        harness,
        {
            "win.txt": b"alpha\r\nbeta\r\ngamma\r\n",
            "tabs.py": b"def f():\n\tif x:\n\t\treturn 1\n",
            "last.txt": b"no final newline",
        },
    )
    out = await ok_editor(
        harness, ws_id, command="str_replace", path="win.txt", old_str="beta\ngamma", new_str="B"
    )
    assert (root / "win.txt").read_bytes() == b"alpha\r\nB\r\n"
    edit = out["edit"]
    assert edit["status"] == "APPLIED"
    assert edit["source"] == "operation"
    assert edit["operation"] == "str_replace"
    assert edit["number"] == 1
    assert edit["author"]["type"] == "user"
    assert edit["author"]["name"] == "developer-user"
    assert edit["files"] == [
        {
            "path": "win.txt",
            "change": "modified",
            "base_hash": sha(b"alpha\r\nbeta\r\ngamma\r\n"),
            "result_hash": sha(b"alpha\r\nB\r\n"),
        }
    ]
    assert out["sha256"] == sha(b"alpha\r\nB\r\n")
    assert "-beta\r\n" in edit["diff"]
    assert "+B\r\n" in edit["diff"]

    await ok_editor(
        harness, ws_id, command="insert", path="win.txt", insert_line=1, insert_text="new\n"
    )
    assert (root / "win.txt").read_bytes() == b"alpha\r\nnew\r\nB\r\n"

    await ok_editor(
        harness,
        ws_id,
        command="str_replace",
        path="tabs.py",
        old_str="\t\treturn 1",
        new_str="\t\treturn 2\n\telse:\n\t\treturn 3",
    )
    assert (root / "tabs.py").read_bytes() == (
        b"def f():\n\tif x:\n\t\treturn 2\n\telse:\n\t\treturn 3\n"
    )
    await ok_editor(
        harness, ws_id, command="insert", path="last.txt", insert_line=1, insert_text="more"
    )
    assert (root / "last.txt").read_bytes() == b"no final newline\nmore"

    created = await ok_editor(
        harness, ws_id, command="create", path="pkg/new.py", file_text="x = 1\n"
    )
    assert (root / "pkg" / "new.py").read_bytes() == b"x = 1\n"
    assert created["edit"]["files"][0]["change"] == "added"
    assert created["edit"]["files"][0]["base_hash"] is None

    viewed = await ok_editor(harness, ws_id, command="view", path="win.txt", view_range=[2, -1])
    assert viewed["output"] == "     2\tnew\n     3\tB"
    assert viewed["edit"] is None
    assert viewed["sha256"] == sha(b"alpha\r\nnew\r\nB\r\n")

    listed = (await get(harness, f"{ws_id}/edits")).json()["items"]
    assert [e["number"] for e in listed] == [5, 4, 3, 2, 1]
    assert all(e["diff"] is None for e in listed)
    one = (await get(harness, f"{ws_id}/edits/{listed[-1]['id']}")).json()
    assert one["diff"] == edit["diff"]
    assert len(await events_of(harness, "edit.applied", 5)) == 5


async def test_editor_errors_are_exact(harness: AppHarness) -> None:
    ws_id, root = await workspace_with(
        harness,
        {
            "a.txt": b"one\ntwo\none\nthree\n",
            "bin.dat": b"\x00\xff\x00",
            "latin.txt": b"caf\xe9\n",
            "dir/inner.txt": b"x\n",
        },
    )
    before = (root / "a.txt").read_bytes()

    async def refused(status: int, code: str, **command: Any) -> dict[str, Any]:
        return problem(await editor(harness, ws_id, **command), status, code)

    await refused(404, "not_found", command="str_replace", path="nope.txt", old_str="x")
    body = await refused(422, "not_found", command="str_replace", path="a.txt", old_str="four")
    assert body["details"]["path"] == "a.txt"
    body = await refused(422, "ambiguous", command="str_replace", path="a.txt", old_str="one")
    assert body["details"]["lines"] == [1, 3]
    await refused(422, "no_op", command="str_replace", path="a.txt", old_str="two", new_str="two")
    await refused(422, "empty_old_string", command="str_replace", path="a.txt", old_str="  \n")
    await refused(
        422, "out_of_range", command="insert", path="a.txt", insert_line=9, insert_text="x"
    )
    await refused(409, "exists", command="create", path="a.txt", file_text="x")
    await refused(415, "binary", command="insert", path="bin.dat", insert_line=0, insert_text="x")
    body = await refused(
        409,
        "conflict",
        command="str_replace",
        path="a.txt",
        old_str="two",
        new_str="2",
        expected_hash="0" * 64,
    )
    assert body["details"]["current_hash"] == sha(before)
    await refused(409, "nothing_to_undo", command="undo", path="a.txt")
    await refused(422, "not_a_file", command="str_replace", path="dir", old_str="x")
    await refused(422, "not_a_file", command="create", path="a.txt/below", file_text="x")
    await refused(
        404, "not_found", command="insert", path="a.txt/below", insert_line=0, insert_text="x"
    )
    body = await refused(
        422, "unencodable", command="str_replace", path="latin.txt", old_str="caf", new_str="\u20ac"
    )
    assert body["details"]["encoding"] == "latin-1"
    assert (root / "latin.txt").read_bytes() == b"caf\xe9\n"
    await refused(400, "outside_workspace", command="undo", path="../a.txt")
    # Schema-level refusals: unknown command, lone surrogate.
    problem(await editor(harness, ws_id, command="delete", path="a.txt"), 422, "validation_error")
    lone_surrogate = await harness.client.post(
        f"/api/v1/workspaces/{ws_id}/editor",
        content=b'{"command": "create", "path": "s.txt", "file_text": "\\ud800"}',
        headers={**await harness.headers(Role.DEVELOPER), "Content-Type": "application/json"},
    )
    problem(lone_surrogate, 422, "validation_error")
    assert (root / "a.txt").read_bytes() == before
    assert (await get(harness, f"{ws_id}/edits")).json()["items"] == []


async def test_undo_restores_step_by_step_and_survives_a_restart(harness: AppHarness) -> None:
    ws_id, root = await workspace_with(harness, {"f.txt": b"v1\n"})
    await ok_editor(harness, ws_id, command="str_replace", path="f.txt", old_str="v1", new_str="v2")
    first = await ok_editor(
        harness, ws_id, command="str_replace", path="f.txt", old_str="v2", new_str="v3"
    )
    await ok_editor(harness, ws_id, command="create", path="g.txt", file_text="g\n")

    # A new app on the same database and data directory: the history is kept.
    async with another_app(harness) as client:
        resp = await client.post(
            f"/api/v1/workspaces/{ws_id}/editor",
            json={"command": "undo", "path": "f.txt"},
            headers=await harness.headers(Role.DEVELOPER),
        )
    assert resp.status_code == 200, resp.text
    undo = resp.json()["edit"]
    assert undo["source"] == "undo"
    assert undo["reverts_edit_id"] == first["edit"]["id"]
    assert (root / "f.txt").read_bytes() == b"v2\n"
    reverted = (await get(harness, f"{ws_id}/edits/{first['edit']['id']}")).json()
    assert reverted["status"] == "REVERTED"
    assert reverted["reverted_by_edit_id"] == undo["id"]

    await ok_editor(harness, ws_id, command="undo", path="f.txt")
    assert (root / "f.txt").read_bytes() == b"v1\n"
    problem(await editor(harness, ws_id, command="undo", path="f.txt"), 409, "nothing_to_undo")
    await ok_editor(harness, ws_id, command="undo", path="g.txt")
    assert not (root / "g.txt").exists()

    # A file changed behind the editor's back is not clobbered by undo.
    await ok_editor(harness, ws_id, command="create", path="h.txt", file_text="h\n")
    (root / "h.txt").write_bytes(b"changed elsewhere\n")
    body = problem(await editor(harness, ws_id, command="undo", path="h.txt"), 409, "conflict")
    assert body["details"]["current_hash"] == sha(b"changed elsewhere\n")


async def test_undo_reaches_back_only_as_deep_as_its_history(harness: AppHarness) -> None:
    """`YMERA_CODE__UNDO_DEPTH` edits of a file can be taken back, no more."""
    ws_id, root = await workspace_with(harness, {"f.txt": b"v0\n"})
    for i in range(3):
        await ok_editor(
            harness,
            ws_id,
            command="str_replace",
            path="f.txt",
            old_str=f"v{i}",
            new_str=f"v{i + 1}",
        )
    headers = await harness.headers(Role.DEVELOPER)
    async with another_app(harness, undo_depth=2) as client:

        async def undo() -> Any:
            return await client.post(
                f"/api/v1/workspaces/{ws_id}/editor",
                json={"command": "undo", "path": "f.txt"},
                headers=headers,
            )

        assert (await undo()).status_code == 200
        assert (await undo()).status_code == 200
        assert (root / "f.txt").read_bytes() == b"v1\n"
        body = problem(await undo(), 409, "nothing_to_undo")
        assert body["details"]["depth"] == 2
    assert (root / "f.txt").read_bytes() == b"v1\n"


PATCH = """\
diff --git a/a.txt b/a.txt
--- a/a.txt
+++ b/a.txt
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
diff --git a/b.txt b/b.txt
--- a/b.txt
+++ b/b.txt
@@ -1,2 +1,2 @@
 bee
-cee
+CEE
"""


async def test_patches_strict_all_or_nothing_dry_run_and_fuzz(harness: AppHarness) -> None:
    ws_id, root = await workspace_with(
        harness, {"a.txt": b"one\ntwo\nthree\n", "b.txt": b"bee\nXXX\n"}
    )
    # The second file does not match: nothing is written, the failure is precise.
    body = problem(await post(harness, f"{ws_id}/patches", patch=PATCH), 422, "patch_failed")
    assert body["details"]["file"] == "b.txt"
    assert body["details"]["found"] == ["bee\n", "XXX\n"]
    assert (root / "a.txt").read_bytes() == b"one\ntwo\nthree\n"
    problem(await post(harness, f"{ws_id}/patches", patch="garbage\n@@ x"), 422, "invalid_patch")

    (root / "b.txt").write_bytes(b"bee\ncee\n")
    dry = await post(harness, f"{ws_id}/patches", patch=PATCH, dry_run=True)
    assert dry.status_code == 200, dry.text
    assert dry.json()["edit"] is None
    assert dry.json()["lines_added"] == 2
    assert (root / "a.txt").read_bytes() == b"one\ntwo\nthree\n"

    done = await post(harness, f"{ws_id}/patches", patch=PATCH, type="BUG_FIX", priority=8)
    assert done.status_code == 200, done.text
    edit = done.json()["edit"]
    assert edit["source"] == "patch"
    assert edit["type"] == "BUG_FIX"
    assert edit["priority"] == 8
    assert [f["path"] for f in edit["files"]] == ["a.txt", "b.txt"]
    assert (root / "a.txt").read_bytes() == b"one\nTWO\nthree\n"
    assert (root / "b.txt").read_bytes() == b"bee\nCEE\n"

    # Lines moved: refused when strict, applied when fuzz is asked for.
    (root / "c.txt").write_bytes(b"x\ny\none\nTWO\nthree\n")
    moved = (
        PATCH.split("diff --git a/b.txt")[0]
        .replace("a.txt", "c.txt")
        .replace("-two\n+TWO", "-TWO\n+2")
    )
    problem(await post(harness, f"{ws_id}/patches", patch=moved), 422, "patch_failed")
    fuzzy = await post(harness, f"{ws_id}/patches", patch=moved, fuzz=1)
    assert fuzzy.status_code == 200, fuzzy.text
    assert (root / "c.txt").read_bytes() == b"x\ny\none\n2\nthree\n"

    stale = await post(
        harness, f"{ws_id}/patches", patch=PATCH, expected_hashes={"a.txt": "0" * 64}
    )
    assert problem(stale, 409, "conflict")["details"]["current_hash"] == sha(b"one\nTWO\nthree\n")
    problem(
        await post(harness, f"{ws_id}/patches", patch=PATCH.replace("a/a.txt", "a/../x")),
        400,
        "outside_workspace",
    )


async def test_bulk_edit_of_1000_files_failing_at_the_last_touches_nothing(
    harness: AppHarness,
) -> None:
    files = {f"pkg/m{i:04}.py": f"VALUE = {i}\n".encode() for i in range(1000)}
    ws_id, root = await workspace_with(harness, files)
    operations = [
        {"command": "str_replace", "path": p, "old_str": "VALUE", "new_str": "RESULT"}
        for p in files
    ]
    operations[-1]["old_str"] = "MISSING"
    resp = await post(harness, f"{ws_id}/bulk", operations=operations)
    body = problem(resp, 422, "not_found")
    assert body["details"]["operation"] == 999
    assert body["detail"].startswith("operation 999 (str_replace pkg/m0999.py)")
    for name, data in files.items():
        assert (root / name).read_bytes() == data
    journal = root.parent / "journal"
    assert not journal.exists() or list(journal.iterdir()) == []
    assert (await get(harness, f"{ws_id}/edits")).json()["items"] == []

    # The same change with a valid last operation: one edit, every file written.
    operations[-1]["old_str"] = "VALUE"
    operations.append({"command": "create", "path": "pkg/new.py", "file_text": "N = 1\n"})
    operations.append({"command": "delete", "path": "pkg/m0000.py"})
    resp = await post(harness, f"{ws_id}/bulk", operations=operations, type="REFACTOR")
    assert resp.status_code == 200, resp.text[:500]
    edit = resp.json()["edit"]
    assert edit["source"] == "bulk"
    assert len(edit["files"]) == 1001
    assert (root / "pkg/m0999.py").read_bytes() == b"RESULT = 999\n"
    assert (root / "pkg/new.py").read_bytes() == b"N = 1\n"
    assert not (root / "pkg/m0000.py").exists()
    assert list(journal.iterdir()) == []


async def test_bulk_operations_chain_on_one_file_and_dry_run(harness: AppHarness) -> None:
    ws_id, root = await workspace_with(harness, {"a.txt": b"a\r\nb\r\n"})
    ops_ = [
        {"command": "str_replace", "path": "a.txt", "old_str": "a", "new_str": "A"},
        {"command": "insert", "path": "a.txt", "insert_line": 2, "insert_text": "c"},
        {"command": "write", "path": "w.txt", "file_text": "w\n"},
    ]
    dry = await post(harness, f"{ws_id}/bulk", operations=ops_, dry_run=True)
    assert dry.status_code == 200, dry.text
    assert dry.json()["edit"] is None
    assert [f["path"] for f in dry.json()["files"]] == ["a.txt", "w.txt"]
    assert (root / "a.txt").read_bytes() == b"a\r\nb\r\n"
    assert not (root / "w.txt").exists()
    done = await post(harness, f"{ws_id}/bulk", operations=ops_)
    assert done.status_code == 200, done.text
    assert (root / "a.txt").read_bytes() == b"A\r\nb\r\nc\r\n"
    noop = [
        {"command": "create", "path": "t.txt", "file_text": "t"},
        {"command": "delete", "path": "t.txt"},
    ]
    problem(await post(harness, f"{ws_id}/bulk", operations=noop), 422, "no_op")


CRASH = """
import os, sys
from pathlib import Path
from ymera.code.bulk import BulkWriter, Write

root, journal = Path(sys.argv[1]), Path(sys.argv[2])

def crash(stage, n):
    if stage == "replaced" and n == 3:
        os._exit(9)  # a crash mid-commit: three files replaced, the rest not

changes = [Write(f"f{i}.txt", b"new\\n") for i in range(6)]
BulkWriter(root, journal, observer=crash).apply(changes)
"""


async def test_server_start_rolls_back_a_bulk_write_a_crash_interrupted(
    harness: AppHarness,
) -> None:
    files = {f"f{i}.txt": b"old\n" for i in range(6)}
    _ws_id, root = await workspace_with(harness, files)
    journal = root.parent / "journal"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH), str(root), str(journal)],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 9, proc.stderr
    assert [(root / n).read_bytes() for n in files].count(b"new\n") == 3
    assert list(journal.iterdir())

    async with another_app(harness):
        pass
    assert {n: (root / n).read_bytes() for n in files} == files
    assert list(journal.iterdir()) == []
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


async def test_review_flow_permissions_apply_and_revert(harness: AppHarness) -> None:
    ws_id, root = await workspace_with(harness, {"app.py": b"x = 1\n"})
    await harness.create_user("dev2", Role.DEVELOPER)
    dev2 = {"Authorization": f"Bearer {(await harness.login('dev2'))['access_token']}"}

    problem(
        await editor(
            harness,
            ws_id,
            Role.VIEWER,
            command="str_replace",
            path="app.py",
            old_str="1",
            new_str="2",
            propose=True,
        ),
        403,
        "missing_permission",
    )
    proposed = await ok_editor(
        harness,
        ws_id,
        command="str_replace",
        path="app.py",
        old_str="x = 1",
        new_str="x = 2",
        propose=True,
        type="BUG_FIX",
        title="fix x",
    )
    edit = proposed["edit"]
    assert edit["status"] == "PROPOSED"
    assert (root / "app.py").read_bytes() == b"x = 1\n"
    edit_url = f"{ws_id}/edits/{edit['id']}"

    problem(await post(harness, f"{edit_url}/apply"), 409, "illegal_edit_transition")
    problem(await post(harness, f"{edit_url}/approve"), 403, "self_approval")
    problem(await post(harness, f"{edit_url}/approve", Role.VIEWER), 403, "missing_permission")
    resp = await harness.client.post(
        f"/api/v1/workspaces/{edit_url}/approve", json={"comment": "lgtm"}, headers=dev2
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "APPROVED"
    assert resp.json()["review_comment"] == "lgtm"
    problem(await post(harness, f"{edit_url}/approve"), 409, "illegal_edit_transition")

    applied = await post(harness, f"{edit_url}/apply")
    assert applied.status_code == 200, applied.text
    assert applied.json()["status"] == "APPLIED"
    assert applied.json()["rebased"] is False
    assert (root / "app.py").read_bytes() == b"x = 2\n"

    reverted = await post(harness, f"{edit_url}/revert")
    assert reverted.status_code == 200, reverted.text
    revert = reverted.json()
    assert revert["source"] == "revert"
    assert revert["reverts_edit_id"] == edit["id"]
    assert (root / "app.py").read_bytes() == b"x = 1\n"
    assert (await get(harness, edit_url)).json()["status"] == "REVERTED"
    problem(await post(harness, f"{edit_url}/revert"), 409, "illegal_edit_transition")

    # Reverting refuses to discard a later change.
    (root / "app.py").write_bytes(b"x = 99\n")
    body = problem(await post(harness, f"{ws_id}/edits/{revert['id']}/revert"), 409, "conflict")
    assert body["details"]["current_hash"] == sha(b"x = 99\n")

    # An admin may approve their own proposal; the author may reject (withdraw) theirs.
    own = await ok_editor(
        harness, ws_id, Role.ADMIN, command="create", path="n.txt", file_text="n", propose=True
    )
    ok = await post(harness, f"{ws_id}/edits/{own['edit']['id']}/approve", Role.ADMIN)
    assert ok.status_code == 200, ok.text
    mine = await ok_editor(
        harness, ws_id, command="create", path="m.txt", file_text="m", propose=True
    )
    withdrawn = await post(harness, f"{ws_id}/edits/{mine['edit']['id']}/reject", comment="no")
    assert withdrawn.json()["status"] == "REJECTED"
    for kind in ("proposed", "approved", "applied", "reverted", "rejected"):
        assert await events_of(harness, f"edit.{kind}"), kind


async def test_rebase_allowed_when_clean_refused_otherwise(harness: AppHarness) -> None:
    text = b"".join(f"line {i}\n".encode() for i in range(1, 21))
    ws_id, root = await workspace_with(harness, {"f.txt": text})
    await harness.create_user("reviewer", Role.DEVELOPER)
    reviewer = {"Authorization": f"Bearer {(await harness.login('reviewer'))['access_token']}"}

    async def proposal(old: str, new: str) -> str:
        out = await ok_editor(
            harness,
            ws_id,
            command="str_replace",
            path="f.txt",
            old_str=old,
            new_str=new,
            propose=True,
        )
        edit_id = str(out["edit"]["id"])
        resp = await harness.client.post(
            f"/api/v1/workspaces/{ws_id}/edits/{edit_id}/approve", headers=reviewer
        )
        assert resp.status_code == 200, resp.text
        return edit_id

    early = await proposal("line 2\n", "line two\n")
    clash = await proposal("line 19\n", "line nineteen\n")
    # Meanwhile the file changes near its end.
    await ok_editor(
        harness, ws_id, command="str_replace", path="f.txt", old_str="line 19\n", new_str="L19\n"
    )
    current = sha((root / "f.txt").read_bytes())

    body = problem(await post(harness, f"{ws_id}/edits/{early}/apply"), 409, "conflict")
    assert body["details"]["current_hash"] == current
    assert body["details"]["base_hash"] == sha(text)
    rebased = await post(harness, f"{ws_id}/edits/{early}/apply", allow_rebase=True)
    assert rebased.status_code == 200, rebased.text
    assert rebased.json()["rebased"] is True
    assert rebased.json()["files"][0]["base_hash"] == current
    assert (root / "f.txt").read_bytes() == text.replace(b"line 2\n", b"line two\n").replace(
        b"line 19\n", b"L19\n"
    )

    refused = await post(harness, f"{ws_id}/edits/{clash}/apply", allow_rebase=True)
    body = problem(refused, 409, "conflict")
    assert body["details"]["reason"] == "patch_failed"
    assert (await get(harness, f"{ws_id}/edits/{clash}")).json()["status"] == "APPROVED"


async def test_sessions_group_edits_and_export_diffs_git_applies(
    harness: AppHarness, tmp_path: Path
) -> None:
    original = {
        "crlf.txt": b"a\r\nb\r\nc\r\n",
        "tabs.go": b"func f() {\n\treturn\n}\n",
        "gone.txt": b"bye\n",
    }
    ws_id, root = await workspace_with(harness, original)
    resp = await post(harness, f"{ws_id}/sessions", title="refactor", description="all of it")
    assert resp.status_code == 201, resp.text
    session = resp.json()
    sid = session["id"]
    await ok_editor(
        harness,
        ws_id,
        command="str_replace",
        path="crlf.txt",
        old_str="b",
        new_str="B",
        session_id=sid,
    )
    await ok_editor(
        harness,
        ws_id,
        command="insert",
        path="tabs.go",
        insert_line=1,
        insert_text="\t// x",
        session_id=sid,
    )
    await ok_editor(
        harness,
        ws_id,
        command="create",
        path="dir/new file.txt",
        file_text="n\n",
        session_id=sid,
    )
    bulk = await post(
        harness,
        f"{ws_id}/bulk",
        operations=[
            {"command": "delete", "path": "gone.txt"},
            {"command": "str_replace", "path": "crlf.txt", "old_str": "c", "new_str": "C"},
        ],
        session_id=sid,
    )
    assert bulk.status_code == 200, bulk.text
    outside = await ok_editor(harness, ws_id, command="create", path="other.txt", file_text="o")
    assert outside["edit"]["session_id"] is None

    in_session = (await get(harness, f"{ws_id}/edits", session_id=sid)).json()["items"]
    assert len(in_session) == 4

    # Export: the session's diff and each edit's diff apply with the real git.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in original.items():
        (copy / name).write_bytes(data)
    git(copy, "init", "-q")
    diff = (await get(harness, f"{ws_id}/sessions/{sid}/diff")).text
    (tmp_path / "session.patch").write_text(diff, newline="")
    applied = git(
        copy, "apply", "--whitespace=nowarn", str(tmp_path / "session.patch"), check=False
    )
    assert applied.returncode == 0, applied.stderr + diff
    for name in ("crlf.txt", "tabs.go", "dir/new file.txt"):
        assert (copy / name).read_bytes() == (root / name).read_bytes(), name
    assert not (copy / "gone.txt").exists()
    assert not (copy / "other.txt").exists()

    single = await get(harness, f"{ws_id}/edits/{outside['edit']['id']}/diff")
    assert single.headers["content-type"].startswith("text/x-diff")
    (tmp_path / "one.patch").write_text(single.text, newline="")
    assert git(copy, "apply", str(tmp_path / "one.patch"), check=False).returncode == 0
    assert (copy / "other.txt").read_bytes() == b"o"

    closed = await post(harness, f"{ws_id}/sessions/{sid}/close")
    assert closed.json()["status"] == "CLOSED"
    problem(
        await editor(
            harness, ws_id, command="create", path="late.txt", file_text="x", session_id=sid
        ),
        409,
        "session_closed",
    )
    problem(
        await editor(
            harness,
            ws_id,
            command="create",
            path="late.txt",
            file_text="x",
            session_id="00000000-0000-7000-8000-000000000000",
        ),
        404,
        "session_not_found",
    )
    listed = (await get(harness, f"{ws_id}/sessions")).json()["items"]
    assert [s["id"] for s in listed] == [sid]
    assert json.dumps(listed)  # plain JSON


async def test_concurrent_writers_to_one_workspace_take_turns(harness: AppHarness) -> None:
    ws_id, root = await workspace_with(harness, {"log.txt": b"start\n"})
    headers = await harness.headers(Role.DEVELOPER)

    async def append(i: int) -> int:
        resp = await harness.client.post(
            f"/api/v1/workspaces/{ws_id}/editor",
            json={"command": "insert", "path": "log.txt", "insert_line": 1, "insert_text": f"{i}"},
            headers=headers,
        )
        return resp.status_code

    assert await asyncio.gather(*(append(i) for i in range(12))) == [200] * 12
    lines = (root / "log.txt").read_text().splitlines()
    assert lines[0] == "start"
    assert sorted(lines[1:], key=int) == [str(i) for i in range(12)]
    edits = (await get(harness, f"{ws_id}/edits", limit=50)).json()["items"]
    assert sorted(e["number"] for e in edits) == list(range(1, 13))
    # Each edit's base is the previous one's result: no update was lost.
    by_number = {e["number"]: e["files"][0] for e in edits}
    for n in range(2, 13):
        assert by_number[n]["base_hash"] == by_number[n - 1]["result_hash"]

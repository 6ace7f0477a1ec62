"""Workspaces over HTTP: create (empty, archive), list, tree, view, delete, and every
refusal (escaping paths, unsafe archives, limits), on every backend."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.code.api_helpers import (
    API,
    another_app,
    cheap_passwords,  # noqa: F401  (autouse fixture)
    create_workspace,
    editor,
    events_of,
    get,
    problem,
    root_of,
    tar_gz_bytes,
    upload,
    zip_bytes,
)
from tests.conftest import AppHarness
from tests.fixtures.backends import Backend
from ymera.auth.permissions import Role
from ymera.config import Settings

MAX_UPLOAD = 64 * 1024
MAX_FILE = 4096


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings(
        code={
            "max_upload_bytes": MAX_UPLOAD,
            "max_file_bytes": MAX_FILE,
            "archive_max_members": 50,
        }
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_empty_workspace_lifecycle_tree_and_events(harness: AppHarness) -> None:
    ws = await create_workspace(harness, name="scratch", description="d")
    assert ws["source"] == "empty"
    assert ws["is_git"] is False
    assert ws["edit_count"] == 0
    root = root_of(harness, ws["id"])
    assert root.is_dir()
    assert list(root.iterdir()) == []

    got = await get(harness, ws["id"])
    assert got.status_code == 200
    assert got.json()["name"] == "scratch"
    listed = await get(harness, "", limit=10)
    assert [w["id"] for w in listed.json()["items"]] == [ws["id"]]

    (root / "src").mkdir()
    (root / "src" / "a.py").write_bytes(b"x = 1\n")
    (root / "README").write_bytes(b"hello\r\n")
    os.symlink("src/a.py", root / "link.py")
    tree = (await get(harness, f"{ws['id']}/tree")).json()
    by_path = {e["path"]: e for e in tree["entries"]}
    assert tree["truncated"] is False
    assert by_path["README"] == {
        "path": "README",
        "type": "file",
        "size": 7,
        "sha256": sha(b"hello\r\n"),
        "target": None,
    }
    assert by_path["src"]["type"] == "directory"
    assert by_path["src/a.py"]["sha256"] == sha(b"x = 1\n")
    assert by_path["link.py"] == {
        "path": "link.py",
        "type": "symlink",
        "size": None,
        "sha256": None,
        "target": "src/a.py",
    }
    sub = (await get(harness, f"{ws['id']}/tree", path="src")).json()
    assert [e["path"] for e in sub["entries"]] == ["src/a.py"]

    created = await events_of(harness, "workspace.created")
    assert created[0]["resource_id"] == ws["id"]

    # Only the owner (or an admin) deletes it.
    other = await harness.client.delete(
        f"{API}/{ws['id']}", headers=await harness.headers(Role.OPERATOR)
    )
    problem(other, 403, "not_owner")
    resp = await harness.client.delete(
        f"{API}/{ws['id']}", headers=await harness.headers(Role.DEVELOPER)
    )
    assert resp.status_code == 204
    assert not root.exists()
    problem(await get(harness, ws["id"]), 404, "workspace_not_found")
    assert (await events_of(harness, "workspace.deleted"))[0]["resource_id"] == ws["id"]


async def test_permissions_and_missing_workspace(harness: AppHarness) -> None:
    resp = await harness.client.post(
        API, json={"name": "nope"}, headers=await harness.headers(Role.VIEWER)
    )
    problem(resp, 403, "missing_permission")
    ws = await create_workspace(harness)
    assert (await get(harness, f"{ws['id']}/tree", role=Role.VIEWER)).status_code == 200
    problem(
        await editor(harness, ws["id"], Role.VIEWER, command="create", path="a", file_text="x"),
        403,
        "missing_permission",
    )
    # A workspace whose directory vanished (deleted by hand) answers 409.
    gone = await create_workspace(harness)
    shutil.rmtree(root_of(harness, gone["id"]).parent)
    problem(await get(harness, f"{gone['id']}/tree"), 409, "workspace_unavailable")
    problem(
        await editor(harness, gone["id"], command="create", path="a", file_text="x"),
        409,
        "workspace_unavailable",
    )
    missing = "00000000-0000-7000-8000-000000000000"
    problem(await get(harness, f"{missing}/tree"), 404, "workspace_not_found")
    problem(await editor(harness, missing, command="view", path=""), 404, "workspace_not_found")


async def test_git_import_is_disabled_by_default(harness: AppHarness) -> None:
    resp = await harness.client.post(
        API,
        json={"name": "g", "source": "git", "git_path": "/tmp"},
        headers=await harness.headers(Role.DEVELOPER),
    )
    body = problem(resp, 403, "git_import_disabled")
    assert "YMERA_CODE__GIT_ALLOWED_ROOTS" in body["detail"]


async def test_archive_upload_zip_and_tar_keep_bytes_and_drop_dot_git(
    harness: AppHarness,
) -> None:
    files = {
        "src/main.py": b"def f():\n\treturn 1\n",
        "win.txt": b"one\r\ntwo\r\n",
        "no-newline.txt": b"last",
        ".git/config": b"[core]\n\tfsmonitor = touch /tmp/pwned\n",
    }
    for data, fmt in ((zip_bytes(files), "zip"), (tar_gz_bytes(files), "tar.gz")):
        resp = await upload(harness, data, name=f"from-{fmt}")
        assert resp.status_code == 201, resp.text
        out = resp.json()
        assert out["format"] == fmt
        assert out["workspace"]["source"] == "archive"
        root = root_of(harness, out["workspace"]["id"])
        for name, content in files.items():
            if not name.startswith(".git"):
                assert (root / name).read_bytes() == content
        assert not (root / ".git").exists()
        assert not (root.parent / "upload.tmp").exists()


async def test_archive_refusals_leave_nothing(harness: AppHarness) -> None:
    base = Path(harness.settings.data_dir) / "workspaces"
    problem(await upload(harness, b"not an archive at all"), 415, "unsupported_archive")
    problem(await upload(harness, b""), 415, "unsupported_archive")
    problem(await upload(harness, b"PK\x03\x04 truncated"), 422, "invalid_archive")

    escaping = io.BytesIO()
    with zipfile.ZipFile(escaping, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    problem(await upload(harness, escaping.getvalue()), 422, "unsafe_archive")

    many = zip_bytes({f"f{i}.txt": b"x" for i in range(60)})
    body = problem(await upload(harness, many), 413, "archive_too_large")
    assert body["details"]["limit"] == "members"

    body = problem(await upload(harness, b"\0" * (MAX_UPLOAD + 1)), 413, "upload_too_large")
    assert body["limit"] == MAX_UPLOAD

    problem(
        await upload(harness, zip_bytes({"a": b"x"}), role=Role.VIEWER), 403, "missing_permission"
    )
    # Past the server's 10 MiB body limit for JSON: the upload route has its own.
    big = zip_bytes({"big.bin": os.urandom(11 * 1024 * 1024)})
    async with another_app(harness, max_upload_bytes=16 * 1024 * 1024) as client:
        resp = await client.post(
            f"{API}/archive",
            params={"name": "big"},
            content=big,
            headers=await harness.headers(Role.DEVELOPER),
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["total_bytes"] == 11 * 1024 * 1024
        deleted = await client.delete(
            f"{API}/{resp.json()['workspace']['id']}",
            headers=await harness.headers(Role.DEVELOPER),
        )
        assert deleted.status_code == 204
    # Nothing of any refused upload stays on disk or in the database.
    assert not base.exists() or list(base.iterdir()) == []
    assert (await get(harness, "")).json()["items"] == []


async def test_paths_escaping_the_workspace_are_refused(
    harness: AppHarness, tmp_path: Path
) -> None:
    ws = await create_workspace(harness)
    ws_id = ws["id"]
    root = root_of(harness, ws_id)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    os.symlink(outside, root / "escape")
    os.symlink(outside / "secret.txt", root / "secret-link.txt")
    (root / "inside.txt").write_text("inside\n")
    os.symlink("inside.txt", root / "ok-link.txt")

    attempts = [
        {"command": "view", "path": "../outside/secret.txt"},
        {"command": "view", "path": "/etc/passwd"},
        {"command": "view", "path": "escape/secret.txt"},
        {"command": "view", "path": "secret-link.txt"},
        {"command": "create", "path": "escape/new.txt", "file_text": "x"},
        {"command": "create", "path": "a/../../x.txt", "file_text": "x"},
        {"command": "str_replace", "path": "secret-link.txt", "old_str": "secret", "new_str": "s"},
        {"command": "insert", "path": "/tmp/x", "insert_line": 0, "insert_text": "x"},
    ]
    for attempt in attempts:
        problem(await editor(harness, ws_id, **attempt), 400, "outside_workspace")
    problem(await get(harness, f"{ws_id}/view", path="escape/secret.txt"), 400, "outside_workspace")
    problem(await get(harness, f"{ws_id}/tree", path="../"), 400, "outside_workspace")
    assert (outside / "secret.txt").read_text() == "secret\n"
    assert not (outside / "new.txt").exists()
    assert not (tmp_path / "x.txt").exists()

    # A symlink that stays inside is followed: the edit lands on its target.
    done = await editor(
        harness, ws_id, command="str_replace", path="ok-link.txt", old_str="in", new_str="IN"
    )
    assert done.status_code == 200, done.text
    assert (root / "inside.txt").read_text() == "INside\n"
    assert done.json()["edit"]["files"][0]["path"] == "inside.txt"

    # The tree lists symlinks without following them out.
    entries = (await get(harness, f"{ws_id}/tree")).json()["entries"]
    assert not any(e["path"].startswith("escape/") for e in entries)


async def test_view_files_and_directories_binary_and_too_large(harness: AppHarness) -> None:
    ws = await create_workspace(harness)
    ws_id = ws["id"]
    root = root_of(harness, ws_id)
    (root / "pkg").mkdir()
    (root / "pkg" / "m.py").write_text("a\nb\nc\n")
    (root / "blob.bin").write_bytes(b"\x00\x01\x02")
    (root / "big.txt").write_bytes(b"x" * (MAX_FILE + 1))

    resp = await get(harness, f"{ws_id}/view", path="pkg/m.py", start=2, end=3)
    out = resp.json()
    assert out["content"] == "     2\tb\n     3\tc"
    assert out["total_lines"] == 3
    assert out["sha256"] == sha(b"a\nb\nc\n")
    listing = (await get(harness, f"{ws_id}/view")).json()
    assert listing["kind"] == "directory"
    assert "pkg/m.py" in listing["entries"]

    problem(await get(harness, f"{ws_id}/view", path="blob.bin"), 415, "binary")
    problem(await get(harness, f"{ws_id}/view", path="big.txt"), 413, "too_large")
    problem(await get(harness, f"{ws_id}/view", path="nope.txt"), 404, "not_found")
    problem(await get(harness, f"{ws_id}/view", path="pkg/m.py", start=5), 422, "out_of_range")
    problem(
        await editor(harness, ws_id, command="str_replace", path="blob.bin", old_str="a"),
        415,
        "binary",
    )
    problem(
        await editor(
            harness, ws_id, command="create", path="new.txt", file_text="y" * MAX_FILE * 2
        ),
        413,
        "too_large",
    )
    assert not (root / "new.txt").exists()

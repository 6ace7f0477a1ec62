"""Git workspaces over HTTP with the real git: import from an allowed local path only,
status, diff, commit with an author (no hooks), the .git directory out of reach."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.code.api_helpers import (
    API,
    cheap_passwords,  # noqa: F401  (autouse fixture)
    create_workspace,
    editor,
    get,
    git,
    make_repo,
    ok_editor,
    post,
    problem,
    root_of,
    upload,
    zip_bytes,
)
from tests.conftest import AppHarness
from tests.fixtures.backends import Backend
from ymera.auth.permissions import Role
from ymera.config import Settings


@pytest.fixture
def settings(backend: Backend) -> Settings:
    allowed = backend.data_dir / "repos"
    allowed.mkdir(exist_ok=True)
    return backend.settings(code={"git_allowed_roots": f"/nonexistent-root:{allowed}"})


def repos(h: AppHarness) -> Path:
    return Path(h.settings.data_dir) / "repos"


async def clone(h: AppHarness, source: Path, **extra: object) -> dict[str, object]:
    return await create_workspace(h, name="cloned", source="git", git_path=str(source), **extra)


async def test_clone_status_diff_and_commit_with_author(
    harness: AppHarness, tmp_path: Path
) -> None:
    source = make_repo(
        repos(harness) / "proj",
        {"src/app.py": b"x = 1\n", "win.txt": b"a\r\nb\r\n", "README.md": b"# p\n"},
    )
    ws = await clone(harness, source)
    ws_id = str(ws["id"])
    assert ws["is_git"] is True
    assert ws["git_origin"] == str(source.resolve())
    root = root_of(harness, ws_id)
    assert (root / "win.txt").read_bytes() == b"a\r\nb\r\n"
    tree = (await get(harness, f"{ws_id}/tree")).json()["entries"]
    assert sorted(e["path"] for e in tree if e["type"] == "file") == [
        "README.md",
        "src/app.py",
        "win.txt",
    ]
    status = (await get(harness, f"{ws_id}/git/status")).json()
    assert status["clean"] is True
    assert status["branch"] == "main"
    assert status["head"] == git(source, "rev-parse", "HEAD").stdout.strip()

    first = await ok_editor(
        harness, ws_id, command="str_replace", path="win.txt", old_str="b", new_str="B"
    )
    second = await ok_editor(harness, ws_id, command="create", path="new.txt", file_text="n\n")
    status = (await get(harness, f"{ws_id}/git/status")).json()
    assert {(e["path"], e["index"], e["worktree"]) for e in status["entries"]} == {
        ("win.txt", " ", "M"),
        ("new.txt", "?", "?"),
    }
    diff = await get(harness, f"{ws_id}/git/diff")
    assert diff.headers["content-type"].startswith("text/x-diff")
    assert "+B\r\n" in diff.text
    assert "+++ b/new.txt" in diff.text
    # The diff applies to a fresh clone of the source, byte for byte.
    copy = tmp_path / "copy"
    git(tmp_path, "clone", "-q", str(source), str(copy))
    (tmp_path / "ws.patch").write_text(diff.text, newline="")
    assert git(copy, "apply", str(tmp_path / "ws.patch"), check=False).returncode == 0
    assert (copy / "win.txt").read_bytes() == b"a\r\nB\r\n"
    # The real index was not touched by the diff.
    assert git(root, "diff", "--cached", "--name-only").stdout == ""

    # Commit only the first edit's file, with an explicit author.
    resp = await post(
        harness,
        f"{ws_id}/git/commit",
        message="Capitalise b\n\nBody.",
        author_name="Ada Lovelace",
        author_email="ada@example.com",
        edit_ids=[first["edit"]["id"]],
    )
    assert resp.status_code == 200, resp.text
    sha = resp.json()["sha"]
    log = git(root, "log", "-1", "--format=%H%n%an <%ae>%n%cn%n%s").stdout.splitlines()
    assert log == [sha, "Ada Lovelace <ada@example.com>", "Ada Lovelace", "Capitalise b"]
    assert git(root, "show", "--name-only", "--format=", sha).stdout.split() == ["win.txt"]
    assert (await get(harness, f"{ws_id}/edits/{first['edit']['id']}")).json()["commit_sha"] == sha
    assert (await get(harness, f"{ws_id}/edits/{second['edit']['id']}")).json()[
        "commit_sha"
    ] is None

    # Then everything, by the caller as default author.
    resp = await post(harness, f"{ws_id}/git/commit", message="Add new.txt")
    assert resp.status_code == 200, resp.text
    assert resp.json()["author_name"] == "developer-user"
    assert resp.json()["edit_ids"] == [second["edit"]["id"]]
    assert git(root, "log", "-1", "--format=%an").stdout.strip() == "developer-user"
    assert (await get(harness, f"{ws_id}/git/status")).json()["clean"] is True
    problem(await post(harness, f"{ws_id}/git/commit", message="again"), 409, "nothing_to_commit")
    problem(
        await post(harness, f"{ws_id}/git/commit", message="x", edit_ids=["nope"]),
        404,
        "edit_not_found",
    )


async def test_hooks_never_run_and_dot_git_is_out_of_reach(harness: AppHarness) -> None:
    source = make_repo(repos(harness) / "hooks", {"a.txt": b"a\n"})
    ws_id = str((await clone(harness, source))["id"])
    root = root_of(harness, ws_id)
    marker = root.parent / "hook-ran"
    hook = root / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    os.symlink(".git/config", root / "cfg")

    for attempt in (
        {"command": "create", "path": ".git/hooks/post-commit", "file_text": "#!/bin/sh\n"},
        {"command": "view", "path": ".git/config"},
        {"command": "str_replace", "path": "cfg", "old_str": "core", "new_str": "x"},
        {"command": "create", "path": ".GIT/x", "file_text": "x"},
    ):
        problem(await editor(harness, ws_id, **attempt), 400, "protected_path")
    patch = "--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-x\n+y\n"
    problem(await post(harness, f"{ws_id}/patches", patch=patch), 400, "protected_path")
    bulk = [{"command": "write", "path": ".git/config", "file_text": "x"}]
    problem(await post(harness, f"{ws_id}/bulk", operations=bulk), 400, "protected_path")
    entries = (await get(harness, f"{ws_id}/tree")).json()["entries"]
    assert not any(e["path"].startswith(".git") for e in entries)

    await ok_editor(harness, ws_id, command="create", path="b.txt", file_text="b\n")
    resp = await post(harness, f"{ws_id}/git/commit", message="with hooks present")
    assert resp.status_code == 200, resp.text
    assert not marker.exists()


async def test_git_sources_outside_allowed_roots_or_urls_are_refused(
    harness: AppHarness, tmp_path: Path
) -> None:
    outside = make_repo(tmp_path / "elsewhere", {"a": b"a\n"})
    (repos(harness) / "not-a-repo").mkdir()
    cases = [
        (str(outside), 403, "git_source_not_allowed"),
        (str(repos(harness) / ".." / ".." / "elsewhere"), 403, "git_source_not_allowed"),
        ("https://github.com/git/git.git", 422, "git_source_invalid"),
        ("file:///etc", 422, "git_source_invalid"),
        ("repos/proj", 422, "git_source_invalid"),
        (str(repos(harness) / "missing"), 422, "git_source_invalid"),
        (str(repos(harness) / "not-a-repo"), 422, "git_failed"),
    ]
    for path, status, code in cases:
        problem(
            await harness.client.post(
                API,
                json={"name": "x", "source": "git", "git_path": path},
                headers=await harness.headers(Role.DEVELOPER),
            ),
            status,
            code,
        )
    # A symlink under an allowed root that leads outside is judged by its target.
    os.symlink(outside, repos(harness) / "sneaky")
    problem(
        await harness.client.post(
            API,
            json={"name": "x", "source": "git", "git_path": str(repos(harness) / "sneaky")},
            headers=await harness.headers(Role.DEVELOPER),
        ),
        403,
        "git_source_not_allowed",
    )
    base = Path(harness.settings.data_dir) / "workspaces"
    assert not base.exists() or list(base.iterdir()) == []


async def test_branch_checkout_init_git_and_non_git_workspaces(harness: AppHarness) -> None:
    source = make_repo(repos(harness) / "branches", {"a.txt": b"main\n"})
    git(source, "checkout", "-qb", "feature")
    (source / "a.txt").write_bytes(b"feature\n")
    git(source, "commit", "-qam", "feature")
    git(source, "checkout", "-q", "main")
    ws = await clone(harness, source, git_ref="feature")
    assert (root_of(harness, str(ws["id"])) / "a.txt").read_bytes() == b"feature\n"
    assert (await get(harness, f"{ws['id']}/git/status")).json()["branch"] == "feature"

    fresh = await create_workspace(harness, init_git=True)
    assert fresh["is_git"] is True
    await ok_editor(harness, fresh["id"], command="create", path="f.txt", file_text="f\n")
    status = (await get(harness, f"{fresh['id']}/git/status")).json()
    assert status["head"] is None
    assert status["entries"][0]["path"] == "f.txt"
    resp = await post(harness, f"{fresh['id']}/git/commit", message="first")
    assert resp.status_code == 200, resp.text

    uploaded = await upload(harness, zip_bytes({"z.txt": b"z\n"}), init_git="true")
    assert uploaded.status_code == 201, uploaded.text
    up_id = uploaded.json()["workspace"]["id"]
    up_root = root_of(harness, up_id)
    assert git(up_root, "log", "--format=%s").stdout.strip() == "Initial import"

    plain = await create_workspace(harness)
    problem(await get(harness, f"{plain['id']}/git/status"), 409, "not_a_git_workspace")
    problem(
        await post(harness, f"{plain['id']}/git/commit", message="m"), 409, "not_a_git_workspace"
    )

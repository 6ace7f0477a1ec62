"""`ymera workspaces` against a real server (uvicorn on loopback), through raw HTTP."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import Result

from tests.cli.conftest import Cli
from tests.cli.test_agents_cli import api_cli, ok, run
from tests.code.api_helpers import make_repo, root_of, zip_bytes
from tests.fixtures.backends import Backend
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role
from ymera.cli.main import app
from ymera.code.diffs import make_patch
from ymera.config import Settings

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

BEFORE = "def f():\r\n\treturn 1\r\n\r\ndef g():\r\n\treturn 1\r\n"


@pytest.fixture
def settings(backend: Backend) -> Settings:
    allowed = backend.data_dir / "repos"
    allowed.mkdir(exist_ok=True)
    return backend.settings(code={"git_allowed_roots": str(allowed)})


async def feed(cli: Cli, data: str | bytes, *args: str) -> Result:
    """Run the command with ``data`` on its stdin."""
    return await asyncio.to_thread(
        cli.runner.invoke, app, list(args), input=data, env=cli.env, catch_exceptions=False
    )


def ident(kind: str, output: str) -> str:
    found = re.search(rf"{kind} id: (\S+)", output)
    assert found, output
    return found.group(1)


def failed(result: Result, code: int = 1) -> str:
    """The output of a command that failed with ``code``, boxes and wrapping flattened."""
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output
    return result.output if code == 1 else " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


async def as_role(cli: Cli, live: LiveServer, role: Role) -> Cli:
    """Another CLI user: a user with ``role``, its access token as the bearer key."""
    token = await live.harness.token_for(role)
    return Cli(env={**cli.env, "YMERA_API_KEY": token}, runner=cli.runner)


async def test_create_view_edit_and_refusals(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    await api_cli(cli, live)
    ws = ident("workspace", await ok(cli, "workspaces", "create", "demo"))
    root = root_of(live.harness, ws)
    assert ws in await ok(cli, "workspaces", "list")

    made = await feed(cli, BEFORE.encode(), "workspaces", "edit", ws, "create", "app.py",
                      "--text-file", "-")  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "Created app.py." in made.output
    assert "edit #1 APPLIED (app.py)" in made.output
    assert (root / "app.py").read_bytes() == BEFORE.encode()  # CRLF and tabs, from stdin

    # A refusal: the problem's message and code, status 1, nothing written.
    ambiguous = failed(await run(cli, "workspaces", "edit", ws, "str-replace", "app.py",
                                 "--old", "\treturn 1", "--new", "\treturn 2"))  # fmt: skip
    assert "old_str occurs 2 times in app.py (lines 2, 5)" in ambiguous
    assert "[ambiguous]" in ambiguous
    assert (root / "app.py").read_bytes() == BEFORE.encode()

    # LF text from a file replaces in the CRLF file (the editor's convenience).
    new = tmp_path / "new.txt"
    new.write_bytes(b"def g():\n\treturn 2")
    replaced = await ok(cli, "workspaces", "edit", ws, "str-replace", "app.py",
                        "--old", "def g():\n\treturn 1", "--new-file", str(new))  # fmt: skip
    assert "edit #2 APPLIED" in replaced
    inserted = await ok(cli, "workspaces", "edit", ws, "insert", "app.py", "--line", "0",
                        "--text", "import os", "--type", "REFACTOR")  # fmt: skip
    assert "introduced: app.py:1:8 F401" in inserted  # the edit's analysis
    after = "import os\r\ndef f():\r\n\treturn 1\r\n\r\ndef g():\r\n\treturn 2\r\n"
    assert (root / "app.py").read_bytes() == after.encode()

    viewed = await ok(cli, "workspaces", "view", ws, "app.py", "--range", "2:3")
    assert re.search(r"# app\.py · 6 lines · sha256 [0-9a-f]{64}", viewed), viewed
    assert "     2\tdef f():\n     3\t\treturn 1\n" in viewed
    assert "app.py" in await ok(cli, "workspaces", "view", ws, ".")
    listing = await ok(cli, "workspaces", "tree", ws)
    assert re.search(r"app\.py\s+│\s+file\s+│\s+\d+", listing), listing
    assert "F401" in await ok(cli, "workspaces", "analysis", ws, "--path", "app.py")
    edits = await ok(cli, "workspaces", "edits", ws, "--status", "APPLIED")
    assert re.search(r"│\s+3\s+│\s+APPLIED\s+│\s+REFACTOR\s+│\s+insert", edits), edits

    assert "Restored app.py" in await ok(cli, "workspaces", "edit", ws, "undo", "app.py")
    assert not (root / "app.py").read_bytes().startswith(b"import os")

    below_a_file = failed(await run(cli, "workspaces", "view", ws, "app.py/x"))
    assert "No such file: app.py/x [not_found]" in below_a_file
    exists = failed(await run(cli, "workspaces", "edit", ws, "create", "app.py", "--text", "x"))
    assert "[exists]" in exists
    stale = failed(await run(cli, "workspaces", "edit", ws, "insert", "app.py", "--line", "1",
                             "--text", "x", "--expected-hash", "0" * 64))  # fmt: skip
    assert "[conflict]" in stale
    # Bad input is a usage error (2), before any request.
    assert (await run(cli, "workspaces", "view", ws, "app.py", "--range", "x")).exit_code == 2
    both = await run(cli, "workspaces", "edit", ws, "create", "b.py", "--text", "x",
                     "--text-file", str(new))  # fmt: skip
    assert both.exit_code == 2
    foreign = await run(cli, "workspaces", "edit", ws, "create", "b.py", "--text", "x",
                        "--line", "3")  # fmt: skip
    assert "--line: not an option of create" in failed(foreign, 2)
    assert "insert needs --line" in failed(
        await run(cli, "workspaces", "edit", ws, "insert", "app.py", "--text", "x"), 2
    )
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9")
    not_utf8 = await run(cli, "workspaces", "edit", ws, "create", "c.py", "--text-file",
                         str(latin))  # fmt: skip
    assert "is not UTF-8 text" in failed(not_utf8, 2)

    assert f"deleted {ws}" in await ok(cli, "workspaces", "delete", ws)
    gone = failed(await run(cli, "workspaces", "tree", ws))
    assert "[workspace_not_found]" in gone


async def test_create_from_archive_and_git(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    await api_cli(cli, live)
    archive = tmp_path / "src.zip"
    archive.write_bytes(zip_bytes({"pkg/a.py": b"A = 1\n", "README": b"hi\n"}))
    created = await ok(cli, "workspaces", "create", "up", "--archive", str(archive))
    assert "unpacked 2 files, 0 directories (zip, 9 bytes)" in created
    listing = await ok(cli, "workspaces", "tree", ident("workspace", created))
    assert "pkg/a.py" in listing
    assert "README" in listing

    repo = make_repo(Path(live.harness.settings.data_dir) / "repos" / "svc", {"m.py": b"x\n"})
    cloned = await ok(cli, "workspaces", "create", "svc", "--git", str(repo))
    assert "created workspace svc (git)" in cloned
    assert "m.py" in await ok(cli, "workspaces", "tree", ident("workspace", cloned))

    outside = failed(await run(cli, "workspaces", "create", "x", "--git", str(tmp_path)))
    assert "[git_source_not_allowed]" in outside
    both = await run(cli, "workspaces", "create", "x", "--git", str(repo), "--archive",
                     str(archive))  # fmt: skip
    assert both.exit_code == 2


def git_apply(directory: Path, diff: bytes) -> None:
    (directory / "change.diff").write_bytes(diff)
    done = subprocess.run(
        ["git", "-c", "core.autocrlf=false", "apply", "change.diff"],
        cwd=directory,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (directory / "change.diff").unlink()


async def test_patch_review_flow_and_diffs(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    admin = await api_cli(cli, live)
    dev = await as_role(cli, live, Role.DEVELOPER)
    ws = ident("workspace", await ok(dev, "workspaces", "create", "flow"))
    root = root_of(live.harness, ws)
    await ok(dev, "workspaces", "edit", ws, "create", "app.py", "--text", BEFORE)
    after = BEFORE.replace("def f():\r\n\treturn 1", "def f():\r\n\treturn 10")
    patch_file = tmp_path / "fix.diff"
    patch_file.write_text(make_patch([("app.py", "app.py", BEFORE, after)]), newline="")

    checked = await ok(dev, "workspaces", "patch", ws, str(patch_file), "--dry-run")
    assert re.search(r"app\.py\s+│\s+modified\s+│\s+\+1\s+│\s+-1", checked), checked
    assert "dry run: the patch applies; nothing was written" in checked
    assert (root / "app.py").read_bytes() == BEFORE.encode()

    stale = tmp_path / "stale.diff"
    stale.write_text(make_patch([("app.py", "app.py", "nope\n", "yes\n")]))
    refused = failed(await run(dev, "workspaces", "patch", ws, str(stale)))
    assert "[patch_failed]" in refused
    assert "expected:\n  - 'nope\\n'" in refused

    proposed = await feed(dev, patch_file.read_bytes(), "workspaces", "patch", ws, "-",
                          "--propose", "--title", "ten")  # fmt: skip
    assert proposed.exit_code == 0, proposed.output
    assert "edit #2 PROPOSED (app.py)" in proposed.output
    edit = ident("edit", proposed.output)
    assert (root / "app.py").read_bytes() == BEFORE.encode()  # a proposal writes nothing
    assert edit in await ok(dev, "workspaces", "edits", ws, "--status", "PROPOSED")

    own = failed(await run(dev, "workspaces", "approve", ws, edit))
    assert "[self_approval]" in own
    assert "APPROVED" in await ok(admin, "workspaces", "approve", ws, edit, "--comment", "ok")
    assert f"edit #2 APPLIED (app.py)\nedit id: {edit}" in await ok(
        dev, "workspaces", "apply", ws, edit
    )
    assert (root / "app.py").read_bytes() == after.encode()
    shown = await ok(dev, "workspaces", "show", ws, edit)
    assert re.search(r"title\s+│\s+ten", shown), shown
    again = failed(await run(dev, "workspaces", "apply", ws, edit))
    assert "[illegal_edit_transition]" in again

    # The edit's diff, printed byte for byte, rebuilds the file with the real git apply.
    printed = await run(dev, "workspaces", "diff", ws, "--edit", edit)
    assert printed.exit_code == 0, printed.output
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "app.py").write_bytes(BEFORE.encode())
    git_apply(checkout, printed.stdout_bytes)
    assert (checkout / "app.py").read_bytes() == after.encode()

    # A session's diff covers its edits; then it applies on top of the checkout too.
    session = ident("session", await ok(dev, "workspaces", "session", ws, "tidy"))
    await ok(dev, "workspaces", "edit", ws, "str-replace", "app.py", "--old", "def g",
             "--new", "def h", "--session", session)  # fmt: skip
    last = ident("edit", await ok(dev, "workspaces", "edit", ws, "insert", "app.py", "--line",
                                  "5", "--text", "# end", "--session", session))  # fmt: skip
    session_diff = await run(dev, "workspaces", "diff", ws, "--session", session)
    assert session_diff.exit_code == 0, session_diff.output
    git_apply(checkout, session_diff.stdout_bytes)
    assert (checkout / "app.py").read_bytes() == (root / "app.py").read_bytes()
    assert (root / "app.py").read_bytes().endswith(b"def h():\r\n\treturn 1\r\n# end\r\n")
    assert (await run(dev, "workspaces", "diff", ws)).exit_code == 2

    stale_revert = failed(await run(dev, "workspaces", "revert", ws, edit))
    assert "[conflict]" in stale_revert  # app.py changed since
    reverted = await ok(dev, "workspaces", "revert", ws, last)
    assert f"reverted {last}" in reverted
    assert "edit #5 APPLIED (app.py)" in reverted  # the revert is an edit of its own
    assert not (root / "app.py").read_bytes().endswith(b"# end\r\n")

    withdrawn = ident("edit", await ok(dev, "workspaces", "edit", ws, "create", "extra.py",
                                       "--text", "x = 1\n", "--propose"))  # fmt: skip
    assert "REJECTED" in await ok(dev, "workspaces", "reject", ws, withdrawn)
    assert not (root / "extra.py").exists()
    viewer = await as_role(cli, live, Role.VIEWER)
    denied = failed(await run(viewer, "workspaces", "edit", ws, "create", "v.py", "--text", "v"))
    assert "[forbidden]" in denied or "permission" in denied.lower()

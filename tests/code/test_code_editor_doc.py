"""docs/code-editor.md's worked example, run as written: a git workspace, a code
task, the page's own worker proposing the fix, a reviewer approving and applying
it, and a commit with the reviewer as author (real server, real WebSocket worker,
real git; every backend)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.code.api_helpers import API, cheap_passwords, root_of  # noqa: F401
from tests.fixtures.live import LiveServer
from tests.tasks.test_worker_e2e import make_agent, running, wait_task
from ymera.auth.permissions import Role
from ymera.worker import Worker

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DOC = Path(__file__).resolve().parents[2] / "docs" / "code-editor.md"


def doc_worker_source() -> str:
    """The worked example's worker, as the page shows it."""
    section = DOC.read_text().split("## Worked example", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


async def test_the_worked_example_runs_as_written(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    reviewer = await h.headers(Role.OPERATOR)

    async def call(method: str, url: str, headers: dict[str, str], **kw: Any) -> Any:
        resp = await h.client.request(method, url, headers=headers, **kw)
        assert resp.status_code in (200, 201), resp.text
        return resp.json()

    # 1. A git workspace with the code, committed.
    ws = (await call("POST", API, dev, json={"name": "demo", "init_git": True}))["id"]
    await call(
        "POST",
        f"{API}/{ws}/editor",
        dev,
        json={"command": "create", "path": "app.py", "file_text": "def f():\n    return 1\n"},
    )
    await call("POST", f"{API}/{ws}/git/commit", dev, json={"message": "Add f"})

    # 3. The page's worker, run by the fixer agent.
    _, key = await make_agent(h, "fixer")
    monkeypatch.setenv("YMERA_URL", live.base_url)
    monkeypatch.setenv("YMERA_API_KEY", key)
    namespace: dict[str, Any] = {}
    exec(compile(doc_worker_source(), str(DOC), "exec"), namespace)
    worker = namespace["worker"]
    assert isinstance(worker, Worker)

    async with running(worker):
        # 2. The task.
        task = await call(
            "POST",
            "/api/v1/tasks",
            dev,
            json={
                "type": "fix-bug",
                "input": {"issue": "f() should return 2"},
                "workspace_id": ws,
            },
        )
        done = await wait_task(h, task["id"], "SUCCEEDED")
    assert done["result"]["status"] == "PROPOSED"
    root = root_of(h, ws)
    assert (root / "app.py").read_text() == "def f():\n    return 1\n"  # nothing written yet

    # 4. Review: find the proposal, read its diff, approve, apply.
    proposed = await call("GET", f"{API}/{ws}/edits", reviewer, params={"status": "PROPOSED"})
    (edit,) = proposed["items"]
    assert edit["id"] == done["result"]["edit"]
    assert edit["author"]["type"] == "agent"
    diff = await h.client.get(f"{API}/{ws}/edits/{edit['id']}/diff", headers=reviewer)
    assert "-    return 1\n+    return 2\n" in diff.text
    await call("POST", f"{API}/{ws}/edits/{edit['id']}/approve", reviewer, json={})
    applied = await call("POST", f"{API}/{ws}/edits/{edit['id']}/apply", reviewer, json={})
    assert applied["status"] == "APPLIED"
    assert (root / "app.py").read_text() == "def f():\n    return 2\n"

    # 5. Commit, with the reviewer as author; git's log shows it.
    commit = await call(
        "POST",
        f"{API}/{ws}/git/commit",
        reviewer,
        json={
            "message": "Fix f (proposed by the fixer agent)",
            "author_name": "Rhea Reviewer",
            "author_email": "rhea@example.com",
        },
    )
    assert edit["id"] in commit["edit_ids"]
    log = subprocess.run(
        ["git", "-C", str(root), "log", "--format=%an: %s"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert log[0] == "Rhea Reviewer: Fix f (proposed by the fixer agent)"
    assert log[-1].endswith(": Add f")
    final = await call("GET", f"{API}/{ws}/edits/{edit['id']}", reviewer)
    assert final["commit_sha"] == commit["sha"]

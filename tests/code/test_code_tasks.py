"""Code tasks: a task carries a workspace, and its agent edits it through the worker
SDK (``ctx.workspace``) over a real server and a real WebSocket; the edits are the
agent's, grouped in the task's session, proposed (or applied, with ``workspace_mode``
"apply"), and reviewed by a person. Also: who may use a workspace, submit checks,
and an http agent editing during its push. On every backend."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.code.api_helpers import (
    API,
    cheap_passwords,  # noqa: F401  (autouse fixture)
    create_workspace,
    problem,
    root_of,
)
from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer, serve_loopback
from tests.tasks.test_http_push import http_agent
from tests.tasks.test_worker_e2e import make_agent, running, wait_task
from ymera.auth.permissions import Role
from ymera.worker import TaskContext, TaskWorkspace, Worker, WorkspaceError

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

APP_PY = b"def f():\n    return 1\n\n\ndef g():\n    return 1\n"
NOTES = b"a\nb\n"
NEW_FILE_PATCH = "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1,2 @@\n+def h():\n+    return 3\n"
TASK_HEADER = "X-Ymera-Task"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def workspace_with(h: AppHarness, files: dict[str, bytes]) -> tuple[str, Path]:
    ws = await create_workspace(h)
    root = root_of(h, ws["id"])
    for name, data in files.items():
        (root / name).write_bytes(data)
    return ws["id"], root


async def submit(h: AppHarness, **body: Any) -> dict[str, Any]:
    resp = await h.client.post("/api/v1/tasks", json=body, headers=await h.headers(Role.DEVELOPER))
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def as_developer(h: AppHarness, method: str, url: str, **kw: Any) -> dict[str, Any]:
    resp = await h.client.request(method, url, headers=await h.headers(Role.DEVELOPER), **kw)
    assert resp.status_code in (200, 201), resp.text
    return dict(resp.json())


def agent_http(live: LiveServer, key: str, task_id: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"}
    if task_id:
        headers[TASK_HEADER] = task_id
    return httpx.AsyncClient(base_url=live.base_url, headers=headers, timeout=30)


async def test_agent_proposes_through_ctx_workspace_and_a_person_applies(
    live: LiveServer,
) -> None:
    h = live.harness
    ws_id, root = await workspace_with(h, {"app.py": APP_PY, "notes.txt": NOTES})
    agent, key = await make_agent(h, "coder")
    worker = Worker(live.base_url, key, concurrency=2)
    seen: dict[str, Any] = {}

    @worker.handler("code.fix")
    async def fix(ctx: TaskContext) -> dict[str, Any]:
        ws = ctx.workspace
        assert isinstance(ws, TaskWorkspace)
        seen["ctx"] = (ctx.workspace_id, ctx.workspace_mode, ws.id, ws.proposes)
        seen["tree"] = await ws.tree()
        seen["view"] = await ws.view("app.py", [1, 2])
        try:
            await ws.str_replace("app.py", "return 1", "return 2")
        except WorkspaceError as exc:
            seen["ambiguous"] = exc
        seen["fixed"] = await ws.str_replace(
            "app.py",
            "def f():\n    return 1",
            "def f():\n    return 2",
            type="BUG_FIX",
            title="f returns 2",
        )
        seen["noted"] = await ws.insert("notes.txt", 0, "top")
        seen["extra"] = await ws.insert("notes.txt", 2, "bottom")
        seen["withdrawn"] = await ws.undo("notes.txt")
        seen["patched"] = await ws.apply_diff(NEW_FILE_PATCH)
        # What only people may do, refused while the agent holds the task.
        async with agent_http(live, key, ctx.task_id) as http:
            base = f"{API}/{ws.id}"
            seen["revert"] = await http.post(f"{base}/edits/any/revert")
            seen["open_session"] = await http.post(f"{base}/sessions", json={"title": "mine"})
            seen["own_session"] = await http.post(
                f"{base}/editor",
                json={"command": "create", "path": "x.txt", "file_text": "x", "session_id": "s"},
            )
            seen["listed"] = (await http.get(API)).json()
        return {"done": True}

    async with running(worker):
        task = await submit(h, type="code.fix", workspace_id=ws_id)
        assert (task["workspace_id"], task["workspace_mode"]) == (ws_id, "propose")
        done = await wait_task(h, task["id"], "SUCCEEDED")
    assert done["result"] == {"done": True}

    assert seen["ctx"] == (ws_id, "propose", ws_id, True)
    assert {e["path"] for e in seen["tree"]["entries"]} == {"app.py", "notes.txt"}
    assert seen["view"]["output"] == "     1\tdef f():\n     2\t    return 1"
    assert seen["view"]["sha256"] == sha(APP_PY)
    error = seen["ambiguous"]
    assert (error.status, error.code, error.details["lines"]) == (422, "ambiguous", [2, 6])
    assert "occurs 2 times" in error.message
    for name in ("revert", "open_session", "own_session"):
        problem(seen[name], 403, "agent_not_allowed")
    assert [w["id"] for w in seen["listed"]["items"]] == [ws_id]

    # Proposals only: nothing was written.
    assert (root / "app.py").read_bytes() == APP_PY
    assert (root / "notes.txt").read_bytes() == NOTES
    assert not (root / "new.py").exists()
    fixed = seen["fixed"]["edit"]
    assert fixed["status"] == "PROPOSED"
    assert fixed["author"] == {"type": "agent", "id": agent["id"], "name": "coder"}
    assert (fixed["type"], fixed["title"]) == ("BUG_FIX", "f returns 2")
    withdrawn = seen["withdrawn"]["edit"]
    assert withdrawn["id"] == seen["extra"]["edit"]["id"]
    assert withdrawn["status"] == "REJECTED"

    # One session for the task, titled after it, holding every edit of the agent.
    sessions = await as_developer(
        h, "GET", f"{API}/{ws_id}/sessions", params={"task_id": task["id"]}
    )
    (es,) = sessions["items"]
    assert es["task_id"] == task["id"]
    assert task["id"] in es["title"]
    assert es["title"].startswith("code.fix")
    assert es["created_by"]["type"] == "agent"
    edits = await as_developer(h, "GET", f"{API}/{ws_id}/edits", params={"session_id": es["id"]})
    assert [(e["number"], e["status"]) for e in reversed(edits["items"])] == [
        (1, "PROPOSED"),
        (2, "PROPOSED"),
        (3, "REJECTED"),
        (4, "PROPOSED"),
    ]
    assert {e["author"]["id"] for e in edits["items"]} == {agent["id"]}

    # The task is over: the agent may no longer use the workspace, and never reviews.
    async with agent_http(live, key, task["id"]) as http:
        problem(await http.get(f"{API}/{ws_id}/tree"), 403, "workspace_not_assigned")
        problem(
            await http.post(f"{API}/{ws_id}/editor", json={"command": "view", "path": "app.py"}),
            403,
            "workspace_not_assigned",
        )
        problem(
            await http.post(f"{API}/{ws_id}/edits/{fixed['id']}/approve"),
            403,
            "missing_permission",
        )
        assert (await http.get(API)).json()["items"] == []

    # A person approves and applies the proposals: now the files change.
    for edit in (fixed, seen["noted"]["edit"], seen["patched"]["edit"]):
        approved = await as_developer(h, "POST", f"{API}/{ws_id}/edits/{edit['id']}/approve")
        assert approved["status"] == "APPROVED"
        applied = await as_developer(h, "POST", f"{API}/{ws_id}/edits/{edit['id']}/apply")
        assert applied["status"] == "APPLIED"
    assert (root / "app.py").read_bytes() == APP_PY.replace(b"return 1", b"return 2", 1)
    assert (root / "notes.txt").read_bytes() == b"top\n" + NOTES
    assert (root / "new.py").read_bytes() == b"def h():\n    return 3\n"
    diff = await h.client.get(
        f"{API}/{ws_id}/sessions/{es['id']}/diff", headers=await h.headers(Role.VIEWER)
    )
    assert "+top\n" in diff.text
    assert "+def h():\n" in diff.text
    assert "+    return 2\n" in diff.text


async def test_apply_mode_writes_at_once_and_a_person_reverts(live: LiveServer) -> None:
    h = live.harness
    ws_id, root = await workspace_with(h, {"app.py": b"x = 1\n"})
    agent, key = await make_agent(h, "applier")
    worker = Worker(live.base_url, key)
    seen: dict[str, Any] = {}

    @worker.handler("code.apply")
    async def apply(ctx: TaskContext) -> dict[str, Any]:
        assert ctx.workspace is not None
        seen["mode"] = (ctx.workspace_mode, ctx.workspace.proposes)
        seen["edit"] = (await ctx.workspace.str_replace("app.py", "x = 1", "x = 2"))["edit"]
        seen["view"] = (await ctx.workspace.view("app.py"))["output"]
        return {}

    async with running(worker):
        task = await submit(h, type="code.apply", workspace_id=ws_id, workspace_mode="apply")
        await wait_task(h, task["id"], "SUCCEEDED")
    assert seen["mode"] == ("apply", False)
    assert seen["view"] == "     1\tx = 2"
    assert (root / "app.py").read_bytes() == b"x = 2\n"
    edit = seen["edit"]
    assert (edit["status"], edit["author"]["id"]) == ("APPLIED", agent["id"])
    (es,) = (
        await as_developer(h, "GET", f"{API}/{ws_id}/sessions", params={"task_id": task["id"]})
    )["items"]
    assert edit["session_id"] == es["id"]

    revert = await as_developer(h, "POST", f"{API}/{ws_id}/edits/{edit['id']}/revert")
    assert (revert["status"], revert["reverts_edit_id"]) == ("APPLIED", edit["id"])
    assert (root / "app.py").read_bytes() == b"x = 1\n"
    reverted = await as_developer(h, "GET", f"{API}/{ws_id}/edits/{edit['id']}")
    assert reverted["status"] == "REVERTED"


async def test_http_agent_edits_while_its_push_is_answered(live: LiveServer) -> None:
    h = live.harness
    ws_id, root = await workspace_with(h, {})
    received: list[dict[str, Any]] = []
    keys: dict[str, str] = {}

    async def tasks(request: Request) -> JSONResponse:
        payload = await request.json()
        received.append(payload)
        async with agent_http(live, keys["key"], payload["task_id"]) as http:
            resp = await http.post(
                f"{API}/{payload['workspace_id']}/editor",
                json={"command": "create", "path": "pushed.txt", "file_text": "hi\n"},
            )
        return JSONResponse({"output": {"status": resp.status_code, "edit": resp.json()}})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/health", health), Route("/tasks", tasks, methods=["POST"])])
    async with serve_loopback(app) as url:
        agent = await http_agent(live, url, name="http-coder")
        key = await h.client.post(
            "/api/v1/api-keys",
            json={"name": "http-coder", "agent_id": agent["id"]},
            headers=await h.headers(Role.ADMIN),
        )
        keys["key"] = key.json()["key"]
        task = await submit(h, type="push", workspace_id=ws_id)
        done = await wait_task(h, task["id"], "SUCCEEDED")
    (payload,) = received
    assert (payload["workspace_id"], payload["workspace_mode"]) == (ws_id, "propose")
    assert done["result"]["status"] == 200
    edit = done["result"]["edit"]["edit"]
    assert (edit["status"], edit["author"]["id"]) == ("PROPOSED", agent["id"])
    assert not (root / "pushed.txt").exists()


async def test_submit_checks_the_workspace_and_agents_need_a_task(
    harness: AppHarness,
) -> None:
    h = harness
    ws_id, _ = await workspace_with(h, {"a.txt": b"a\n"})
    dev = await h.headers(Role.DEVELOPER)

    unknown = await h.client.post(
        "/api/v1/tasks", json={"type": "t", "workspace_id": "nope"}, headers=dev
    )
    body = problem(unknown, 422, "unknown_workspace")
    assert body["workspace_ids"] == ["nope"]
    assert "nope" in body["detail"]
    batch = await h.client.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{"type": "t", "workspace_id": ws_id}, {"type": "t", "workspace_id": "x"}]},
        headers=dev,
    )
    problem(batch, 422, "unknown_workspace")
    listed = await h.client.get("/api/v1/tasks", headers=dev)
    assert listed.json()["items"] == []  # all or nothing

    # Submissions committed together: the refused one fails alone.
    answers = await asyncio.gather(
        *(
            h.client.post(
                "/api/v1/tasks",
                json={"type": "t", "workspace_id": ws_id if i % 3 else "missing"},
                headers=dev,
            )
            for i in range(9)
        )
    )
    assert sorted(a.status_code for a in answers) == [201] * 6 + [422] * 3
    plain = await submit(h, type="t", workspace_mode="apply")
    assert (plain["workspace_id"], plain["workspace_mode"]) == (None, None)
    carried = await submit(h, type="t", workspace_id=ws_id, workspace_mode="apply")
    fetched = await h.client.get(f"/api/v1/tasks/{carried['id']}", headers=dev)
    assert (fetched.json()["workspace_id"], fetched.json()["workspace_mode"]) == (ws_id, "apply")

    # A key that may submit tasks but not read workspaces.
    narrow = await h.client.post(
        "/api/v1/api-keys", json={"name": "narrow", "scopes": ["tasks:write"]}, headers=dev
    )
    refused = await h.client.post(
        "/api/v1/tasks",
        json={"type": "t", "workspace_id": ws_id},
        headers={"Authorization": f"Bearer {narrow.json()['key']}"},
    )
    assert problem(refused, 403, "missing_permission")["permission"] == "workspaces:read"

    # An agent holding no task on the workspace may not use it.
    _, key = await make_agent(h, "idle-agent")
    agent = {"Authorization": f"Bearer {key}"}
    problem(await h.client.get(f"{API}/{ws_id}/tree", headers=agent), 403, "workspace_not_assigned")
    problem(
        await h.client.post(
            f"{API}/{ws_id}/editor",
            json={"command": "create", "path": "b.txt", "file_text": "b"},
            headers={**agent, TASK_HEADER: carried["id"]},
        ),
        403,
        "workspace_not_assigned",
    )
    problem(
        await h.client.post(f"{API}/{ws_id}/edits/e/approve", headers=agent),
        403,
        "missing_permission",
    )
    problem(
        await h.client.post(API, json={"name": "mine"}, headers=agent), 403, "agent_not_allowed"
    )
    assert (await h.client.get(API, headers=agent)).json()["items"] == []

    # Deleting the workspace leaves its tasks, without it.
    deleted = await h.client.delete(f"{API}/{ws_id}", headers=dev)
    assert deleted.status_code == 204, deleted.text
    after = await h.client.get(f"/api/v1/tasks/{carried['id']}", headers=dev)
    assert after.json()["workspace_id"] is None

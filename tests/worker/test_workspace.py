"""``ctx.workspace`` on its own: what it sends (the agent's key, the task's id) and
how refusals become ``WorkspaceError``, against a stand-in server on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fixtures.live import serve_loopback
from ymera.worker import TaskContext, TaskWorkspace, WorkspaceError

PROBLEM = "application/problem+json"


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    calls: list[dict[str, Any]] = []

    async def route(request: Request) -> JSONResponse:
        body = await request.json() if request.method == "POST" else None
        calls.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "auth": request.headers.get("authorization"),
                "task": request.headers.get("x-ymera-task"),
                "body": body,
            }
        )
        if body and body.get("old_str") == "twice":
            return JSONResponse(
                {
                    "type": "urn:ymera:problem:ambiguous",
                    "status": 422,
                    "code": "ambiguous",
                    "detail": "old_str occurs 2 times in a.py (lines 1, 3)",
                    "details": {"lines": [1, 3], "path": "a.py"},
                },
                status_code=422,
                media_type=PROBLEM,
            )
        if request.url.path.endswith("/tree"):
            return JSONResponse(
                {
                    "type": "urn:ymera:problem:workspace_not_assigned",
                    "status": 403,
                    "code": "workspace_not_assigned",
                    "detail": "not yours",
                    "workspace_id": "w1",
                },
                status_code=403,
                media_type=PROBLEM,
            )
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/api/v1/workspaces/w1/editor", route, methods=["POST"]),
            Route("/api/v1/workspaces/w1/patches", route, methods=["POST"]),
            Route("/api/v1/workspaces/w1/tree", route),
        ]
    )
    async with serve_loopback(app) as url:
        yield url, calls


def context(url: str, workspace_id: str | None) -> TaskContext:
    return TaskContext(
        task_id="t1",
        attempt=1,
        lease_token="lease",
        task_type="code",
        input={},
        file_ids=[],
        deadline=None,
        timeout=None,
        logger=logging.LoggerAdapter(logging.getLogger("test"), {}),
        _emit=lambda frame: None,
        _loop=asyncio.get_running_loop(),
        _http=(url, "ymk_agent"),
        workspace_id=workspace_id,
        workspace_mode="apply" if workspace_id else None,
    )


async def test_no_workspace_without_a_workspace_id(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    assert context(server[0], None).workspace is None


async def test_calls_carry_the_key_and_the_task_and_refusals_are_typed(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, calls = server
    ws = context(url, "w1").workspace
    assert isinstance(ws, TaskWorkspace)
    assert (ws.id, ws.mode, ws.proposes) == ("w1", "apply", False)
    await ws.view("a.py", [1, 3])
    await ws.create("b.py", "x = 1\n", type="FEATURE")
    await ws.insert("a.py", 0, "# top")
    await ws.undo("a.py")
    await ws.apply_diff("--- a\n", dry_run=True, fuzz=1)
    with pytest.raises(WorkspaceError) as ambiguous:
        await ws.str_replace("a.py", "twice", "once")
    with pytest.raises(WorkspaceError) as denied:
        await ws.tree("src")
    await ws.aclose()

    assert {c["auth"] for c in calls} == {"Bearer ymk_agent"}
    assert {c["task"] for c in calls} == {"t1"}
    assert [c["body"] for c in calls[:5]] == [
        {"command": "view", "path": "a.py", "view_range": [1, 3]},
        {"command": "create", "path": "b.py", "file_text": "x = 1\n", "type": "FEATURE"},
        {"command": "insert", "path": "a.py", "insert_line": 0, "insert_text": "# top"},
        {"command": "undo", "path": "a.py"},
        {"patch": "--- a\n", "dry_run": True, "fuzz": 1},
    ]
    assert calls[-1]["query"] == {"path": "src"}
    error = ambiguous.value
    assert (error.status, error.code) == (422, "ambiguous")
    assert error.details == {"lines": [1, 3], "path": "a.py"}
    assert error.message.startswith("old_str occurs 2 times")
    # Without a `details` object, the problem's own extra fields are the details.
    assert (denied.value.code, denied.value.details) == (
        "workspace_not_assigned",
        {"workspace_id": "w1"},
    )

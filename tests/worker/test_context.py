"""The worker SDK's task context: file download against a real HTTP server, and
reports from sync handlers running in threads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

import ymera.worker
from tests.fixtures.waiting import wait_until
from ymera.worker import TaskContext

BLOB = os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture
async def file_server() -> AsyncIterator[str]:
    async def content(request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer ymk_test":
            return Response(status_code=401)
        if request.path_params["file_id"] != "f1":
            return Response(status_code=404)

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(BLOB), 65536):
                yield BLOB[i : i + 65536]

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    app = Starlette(routes=[Route("/api/v1/files/{file_id}/content", content)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    job = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_until(lambda: server.started, timeout=10, what="file server")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(job, 10)
        sock.close()


def make_ctx(url: str, frames: list[dict[str, Any]]) -> TaskContext:
    return TaskContext(
        task_id="t1",
        attempt=2,
        lease_token="lease",
        task_type="x",
        input={},
        file_ids=["f1"],
        deadline=None,
        timeout=None,
        logger=logging.LoggerAdapter(logging.getLogger("test"), {}),
        _emit=frames.append,
        _loop=asyncio.get_running_loop(),
        _http=(url, "ymk_test"),
    )


def test_public_names_are_pinned() -> None:
    assert set(ymera.worker.__all__) == {
        "Handler",
        "KnowledgeError",
        "TaskContext",
        "TaskFailed",
        "TaskKnowledge",
        "TaskWorkspace",
        "Worker",
        "WorkerStopped",
        "WorkspaceError",
    }


async def test_download_streams_an_attached_file(file_server: str, tmp_path: Path) -> None:
    ctx = make_ctx(file_server, [])
    path = await ctx.download("f1", tmp_path / "blob.bin")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(BLOB).hexdigest()
    with pytest.raises(Exception, match="404"):
        await ctx.download("missing", tmp_path / "missing.bin")


async def test_reports_from_a_thread_reach_the_loop(file_server: str) -> None:
    frames: list[dict[str, Any]] = []
    ctx = make_ctx(file_server, frames)

    def sync_handler() -> None:
        assert threading.current_thread() is not threading.main_thread()
        ctx.progress(40, "reading")
        ctx.stream("part")
        ctx.heartbeat()

    await asyncio.to_thread(sync_handler)
    await wait_until(lambda: len(frames) == 3, timeout=5, what="three frames")
    assert [f["type"] for f in frames] == ["progress", "output", "progress"]
    assert frames[0]["pct"] == 40.0
    assert frames[1] == {
        "type": "output",
        "task_id": "t1",
        "attempt": 2,
        "lease_token": "lease",
        "chunk": "part",
        "seq": 1,
    }
    assert not ctx.is_cancelled()
    ctx._cancelled.set()
    assert ctx.is_cancelled()

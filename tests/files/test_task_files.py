"""Files attached to a task: its agent downloads them through the worker SDK
(``ctx.download``) while it holds the task, and not once it is done (real server,
real WebSocket worker; every backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.live import LiveServer
from tests.tasks.test_worker_e2e import make_agent, running, wait_task
from ymera.auth.permissions import Role
from ymera.worker import TaskContext, Worker

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

BODY = bytes(range(256)) * 300


async def test_an_agent_downloads_its_tasks_files_while_it_holds_the_task(
    live: LiveServer, tmp_path: Path
) -> None:
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    uploaded = await h.client.post(
        "/api/v1/files",
        params={"name": "data.bin"},
        content=BODY,
        headers={**dev, "Content-Type": "application/octet-stream"},
    )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    _, key = await make_agent(h, "reader")
    worker = Worker(live.base_url, key, concurrency=1)

    @worker.handler("read")
    async def read(ctx: TaskContext) -> dict[str, Any]:
        path = await ctx.download(ctx.input["file"], tmp_path / "got.bin")
        return {"size": path.stat().st_size}

    async with running(worker):
        task = (
            await h.client.post(
                "/api/v1/tasks",
                json={"type": "read", "input": {"file": file_id}, "file_ids": [file_id]},
                headers=dev,
            )
        ).json()
        done = await wait_task(h, task["id"], "SUCCEEDED")
    assert done["result"] == {"size": len(BODY)}
    assert (tmp_path / "got.bin").read_bytes() == BODY

    # The task is over: the agent no longer reads the file (nor ever one not attached).
    async with httpx.AsyncClient(
        base_url=live.base_url, headers={"Authorization": f"Bearer {key}"}
    ) as agent:
        gone = await agent.get(f"/api/v1/files/{file_id}/content")
        assert gone.status_code == 404
        assert gone.json()["code"] == "file_not_found"

"""`ymera tasks` against a real server with a real worker running the tasks."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.cli.conftest import Cli
from tests.cli.test_agents_cli import api_cli, ok, run
from tests.fixtures.live import LiveServer
from tests.fixtures.waiting import wait_until
from tests.tasks.test_worker_e2e import make_agent, running
from ymera.auth.permissions import Role
from ymera.worker import TaskContext, TaskFailed, Worker


def task_id(output: str) -> str:
    found = re.search(r"task id: (\S+)", output)
    assert found, output
    return found.group(1)


async def test_submit_watch_get_list(cli: Cli, live: LiveServer) -> None:
    await api_cli(cli, live)
    _, key = await make_agent(live.harness, "cli-worker", capabilities=[{"name": "echo"}])
    worker = Worker(live.base_url, key, concurrency=2)
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    @worker.handler("echo")
    async def echo(ctx: TaskContext) -> dict[str, Any]:
        ctx.progress(50, "halfway")
        if ctx.input.get("hold"):
            await release.wait()
        if ctx.input.get("fail"):
            raise TaskFailed("no good", retryable=False)
        return {"echo": ctx.input["text"]}

    async with running(worker):
        done = await ok(
            cli, "tasks", "submit", "echo", "-i", '{"text": "hi"}', "-c", "echo", "--watch"
        )
        tid = task_id(done)
        assert f"task {tid} SUCCEEDED" in done
        assert re.search(r"result\s+│\s+\{\"echo\": \"hi\"\}", done), done

        # watch follows a running task and ends when it does
        held = task_id(await ok(cli, "tasks", "submit", "echo", "-i", '{"hold": 1, "text": "x"}'))
        watching = asyncio.create_task(run(cli, "tasks", "watch", held, "--interval", "0.05"))
        headers = await live.harness.headers(Role.ADMIN)

        async def is_running() -> bool:
            got = await live.harness.client.get(f"/api/v1/tasks/{held}", headers=headers)
            return bool(got.json()["status"] == "RUNNING")

        await wait_until(is_running, timeout=10, what="the held task to run")
        assert not watching.done()  # still watching a task that is not final
        loop.call_soon(release.set)
        watched = await asyncio.wait_for(watching, 20)
        assert watched.exit_code == 0, watched.output
        assert f"task {held} SUCCEEDED" in watched.output

        failing = task_id(await ok(cli, "tasks", "submit", "echo", "-i", '{"fail": true}'))
        failed = await run(cli, "tasks", "watch", failing, "--interval", "0.05", "--timeout", "20")
        assert failed.exit_code == 1
        assert f"task {failing} FAILED: no good" in failed.output

    shown = await ok(cli, "tasks", "get", tid)
    assert re.search(r"status\s+│\s+SUCCEEDED", shown), shown
    assert re.search(r"progress\s+│\s+100% halfway", shown), shown

    listed = await ok(cli, "tasks", "list", "--status", "succeeded")
    assert tid in listed
    assert held in listed
    assert failing not in listed
    assert failing in await ok(cli, "tasks", "list", "--status", "FAILED", "--type", "echo")


async def test_cancel_and_watch_exit_codes(cli: Cli, live: LiveServer) -> None:
    await api_cli(cli, live)
    pending = task_id(await ok(cli, "tasks", "submit", "nobody-runs-this", "--priority", "9"))
    timed_out = await run(cli, "tasks", "watch", pending, "--interval", "0.05", "--timeout", "0.2")
    assert timed_out.exit_code == 1
    assert f"task {pending} is still PENDING" in timed_out.output

    assert f"{pending}: CANCELLED" in await ok(cli, "tasks", "cancel", pending, "--reason", "no")
    cancelled = await run(cli, "tasks", "watch", pending)
    assert cancelled.exit_code == 1
    assert f"task {pending} CANCELLED" in cancelled.output

    again = await run(cli, "tasks", "cancel", pending)
    assert again.exit_code == 1
    assert "error:" in again.output
    assert "Traceback" not in again.output
    missing = await run(cli, "tasks", "get", "no-such-task")
    assert missing.exit_code == 1
    assert "not found" in missing.output


async def test_submit_is_idempotent_and_checks_its_input(cli: Cli, live: LiveServer) -> None:
    await api_cli(cli, live)
    args = ("tasks", "submit", "echo", "-i", '{"a": 1}', "--idempotency-key", "once")
    first = task_id(await ok(cli, *args))
    assert task_id(await ok(cli, *args)) == first
    assert (await run(cli, "tasks", "submit", "echo", "-i", "[1]")).exit_code == 2
    assert (await run(cli, "tasks", "submit", "echo", "-i", "{nope")).exit_code == 2
    invalid = await run(cli, "tasks", "submit", "bad type!")
    assert invalid.exit_code == 1
    assert "error:" in invalid.output


async def test_submit_only_pins_the_task_to_its_agents(cli: Cli, live: LiveServer) -> None:
    await api_cli(cli, live)
    lonely = await run(cli, "tasks", "submit", "echo", "--only")
    assert lonely.exit_code == 1
    assert "--only needs at least one --agent" in lonely.output
    ghost = await run(cli, "tasks", "submit", "echo", "--agent", "ghost", "--only")
    assert ghost.exit_code == 1
    assert "ghost" in ghost.output
    assert "Traceback" not in ghost.output
    admin = await live.harness.headers(Role.ADMIN)
    body = {"name": "pinned", "type": "CUSTOM"}
    assert (await live.harness.client.post("/api/v1/agents", json=body, headers=admin)).is_success
    pinned = task_id(await ok(cli, "tasks", "submit", "echo", "--agent", "pinned", "--only"))
    task = (await live.harness.client.get(f"/api/v1/tasks/{pinned}", headers=admin)).json()
    assert (task["preferred_agents"], task["preferred_only"]) == (["pinned"], True)

"""`ymera workflows` against a real server with a real worker."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Cli
from tests.cli.test_agents_cli import api_cli, ok, run
from tests.fixtures.live import LiveServer
from tests.fixtures.waiting import wait_until
from tests.workflows.helpers import get_run, make_agent, running
from ymera.auth.permissions import Role
from ymera.worker import TaskContext, TaskFailed, Worker

FLOW = """
name: cli-flow
steps:
  - id: first
    task_type: job
    input: {mode: "${input.mode}"}
  - id: second
    depends_on: [first]
    task_type: job
    input: {mode: "${input.then}"}
"""

# The CLI renders what the API answers: the API's tests cover both backends.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite-memory"], indirect=True)


def run_id(output: str) -> str:
    found = re.search(r"run id: (\S+)", output)
    assert found, output
    return found.group(1)


@SQLITE_ONLY
async def test_create_run_watch_list_get_cancel_retry(
    cli: Cli, live: LiveServer, tmp_path: Path
) -> None:
    await api_cli(cli, live)
    h = live.harness
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - {id: a, task_type: t, depends_on: [zz]}\n")
    refused = await run(cli, "workflows", "create", str(bad))
    assert refused.exit_code == 1
    assert "steps[0].depends_on[0]: unknown step 'zz'" in refused.output
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text("name: [unclosed\n")
    assert (await run(cli, "workflows", "create", str(garbled))).exit_code == 2

    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    assert "cli-flow: valid" in await ok(cli, "workflows", "create", str(flow), "--dry-run")
    assert "workflow cli-flow version 1" in await ok(cli, "workflows", "create", str(flow))
    assert "cli-flow" in await ok(cli, "workflows", "list")
    assert "task_type: job" in await ok(cli, "workflows", "show", "cli-flow")

    _, key = await make_agent(h, "cli-agent")
    worker = Worker(live.base_url, key, concurrency=2)
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    @worker.handler("job")
    async def job(ctx: TaskContext) -> dict[str, Any]:
        if ctx.input["mode"] == "fail":
            raise TaskFailed("told to fail", retryable=False)
        if ctx.input["mode"] == "hold":
            await release.wait()
        return {"mode": ctx.input["mode"]}

    async with running(worker):
        done = await ok(
            cli, "workflows", "run", "cli-flow", "-i", '{"mode": "ok", "then": "ok"}', "--watch"
        )
        assert re.search(r"✓ second SUCCEEDED", done), done
        assert 'output: {"second": {"mode": "ok"}}' in done

        failing = run_id(
            await ok(cli, "workflows", "run", "cli-flow", "-i", '{"mode": "ok", "then": "fail"}')
        )
        watched = await run(cli, "workflows", "watch", failing, "--interval", "0.05")
        assert watched.exit_code == 1, watched.output
        assert "✗ second FAILED" in watched.output
        assert f"run {failing} FAILED: step second failed" in watched.output
        assert failing in await ok(cli, "workflows", "runs", "--status", "failed")
        assert "✓ first SUCCEEDED" in await ok(cli, "workflows", "get", failing)

        # Retried, the failed step runs again (and fails again: its input is the same).
        assert f"{failing}: RUNNING" in await ok(cli, "workflows", "retry", failing)
        await wait_until(
            lambda: _status(h, failing), timeout=10, what="the retried run to fail again"
        )

        held = run_id(
            await ok(cli, "workflows", "run", "cli-flow", "-i", '{"mode": "hold", "then": "ok"}')
        )
        await wait_until(lambda: _step_running(h, held), timeout=10, what="the first step to run")
        assert f"{held}: CANCELLED" in await ok(cli, "workflows", "cancel", held)
        loop.call_soon(release.set)


async def _status(h: Any, rid: str) -> bool:
    run = await get_run(h, rid, Role.ADMIN)
    return run["status"] == "FAILED" and run["retries"] == 1


async def _step_running(h: Any, rid: str) -> bool:
    steps = (await get_run(h, rid, Role.ADMIN))["steps"]
    return any(s["key"] == "first" and s["status"] == "RUNNING" for s in steps)

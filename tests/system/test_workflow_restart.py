"""A workflow run survives a crash of the server (issue 5): SIGKILL `ymera serve`
while a step's task is running, finish that task while the server is down, start
the server again on the same database, and the run goes on from where it was to
the end. No step runs twice: each step has one task, run once (attempt 1).

Real processes: `ymera serve` and a `ymera worker run` process (the sample
worker), on SQLite and on PostgreSQL + Redis. The kill happens at a point chosen
by observed progress (the held step RUNNING), not after a sleep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.process import ProcessManager, wait_for
from tests.fixtures.workers import YmeraServer, fast_settings, markers, start_worker
from tests.system.test_workers import backend_env, marker_dir

pytestmark = pytest.mark.system

__all__ = ["backend_env", "marker_dir"]


def _step(run: dict[str, Any], key: str) -> dict[str, Any]:
    return next(s for s in run["steps"] if s["key"] == key)


def test_a_run_goes_on_after_the_server_is_killed_mid_run(
    backend_env: dict[str, str], processes: ProcessManager, tmp_path: Path, marker_dir: Path
) -> None:
    # Leases and silence outlast the restart: the running task is kept, not re-leased.
    server = YmeraServer(
        processes,
        tmp_path / "server",
        env=fast_settings(heartbeat_timeout=15.0, lease_seconds=15.0, extra=backend_env),
    )
    server.start()
    api = server.api()
    agent, key = api.create_worker_agent("wf-worker", ["wf"], max_concurrency=4)
    worker = start_worker(processes, "w1", server.url, key, concurrency=4)
    api.wait_agent(agent["id"], "IDLE")

    gate = tmp_path / "gate"  # opened while the server is down
    marks = str(marker_dir)
    on_wf = {"capabilities": ["wf"]}

    def echo(step_id: str, value: Any, **extra: Any) -> dict[str, Any]:
        return {
            "id": step_id,
            "task_type": "echo",
            "agent": on_wf,
            "input": {"value": value, "markers": marks},
            **extra,
        }

    definition = {
        "name": "crash-safe",
        "steps": [
            echo("first", "${input.start}"),
            {
                "id": "held",
                "depends_on": ["first"],
                "task_type": "hold",
                "agent": on_wf,
                "input": {"gate": str(gate), "markers": marks},
            },
            {
                "id": "fan",
                "depends_on": ["held"],
                "strategy": "PARALLEL",
                "steps": [echo(f"x{i}", f"${{outputs.first.echo}}-{i}") for i in range(3)],
            },
            echo(
                "last", "${[outputs.x0.echo, outputs.x1.echo, outputs.x2.echo]}", depends_on=["fan"]
            ),
        ],
    }
    created = api.http.post("/api/v1/workflows", json=definition)
    assert created.status_code == 201, created.text
    started = api.http.post(
        "/api/v1/workflow-runs", json={"workflow": "crash-safe", "input": {"start": "go"}}
    )
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]

    def run() -> dict[str, Any]:
        resp = api.http.get(f"/api/v1/workflow-runs/{run_id}")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    # Kill at a point chosen by observed progress: the held step's task RUNNING.
    held = wait_for(
        lambda: (s := _step(run(), "held"))["task_id"] and s,
        timeout=20,
        what="the held step to start",
        context=processes.describe,
    )
    api.wait_task(held["task_id"], "RUNNING")
    before = run()
    assert _step(before, "first")["status"] == "SUCCEEDED"
    assert _step(before, "fan")["status"] == "PENDING"

    server.kill()
    gate.touch()  # the held task finishes while nobody listens: its result waits
    wait_for(
        lambda: "connection lost" in worker.log(),
        timeout=10,
        what="the worker to notice the server is gone",
        context=worker.describe,
    )
    server.start()

    done = wait_for(
        lambda: (r := run())["status"] in ("SUCCEEDED", "FAILED", "CANCELLED") and r,
        timeout=40,
        what="the run to finish after the restart",
        context=processes.describe,
    )
    assert done["status"] == "SUCCEEDED", done
    assert done["output"] == {"last": _step(done, "last")["output"]}
    assert _step(done, "last")["output"]["echo"] == ["go-0", "go-1", "go-2"]
    assert {s["key"]: s["status"] for s in done["steps"]} == dict.fromkeys(
        ("first", "held", "fan", "x0", "x1", "x2", "last"), "SUCCEEDED"
    )
    # No step ran twice: one task per step, executed once, as its first attempt.
    steps = [s for s in done["steps"] if s["kind"] == "step"]
    assert all(len(s["tasks"]) == 1 for s in steps), steps
    task_ids = sorted(s["task_id"] for s in steps)
    assert markers(marker_dir) == sorted((t, 1, "w1") for t in task_ids)
    for task_id in task_ids:
        assert api.task(task_id)["attempt"] == 1
    assert worker.alive(), worker.describe()
    api.close()

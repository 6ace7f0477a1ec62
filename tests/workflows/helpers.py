"""Helpers of the workflow tests: agents with keys, in-process SDK workers,
definitions, runs and waiting for them."""

from __future__ import annotations

from typing import Any

from tests.conftest import AppHarness
from tests.fixtures.waiting import wait_until
from tests.tasks.test_worker_e2e import running
from ymera.auth.permissions import Role

__all__ = ["create_workflow", "make_agent", "run_steps", "running", "start_run", "wait_run"]

FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


async def make_agent(
    h: AppHarness,
    name: str,
    *,
    type: str = "CUSTOM",
    capabilities: tuple[str, ...] = (),
    max_concurrency: int = 4,
) -> tuple[dict[str, Any], str]:
    """A worker agent and its agent key."""
    admin = await h.headers(Role.ADMIN)
    body = {
        "name": name,
        "type": type,
        "max_concurrency": max_concurrency,
        "capabilities": [{"name": c, "proficiency": 0.9} for c in capabilities],
    }
    resp = await h.client.post("/api/v1/agents", json=body, headers=admin)
    assert resp.status_code == 201, resp.text
    agent = resp.json()
    key = await h.client.post(
        "/api/v1/api-keys", json={"name": name, "agent_id": agent["id"]}, headers=admin
    )
    assert key.status_code == 201, key.text
    return agent, key.json()["key"]


async def create_workflow(h: AppHarness, definition: dict[str, Any]) -> dict[str, Any]:
    resp = await h.client.post(
        "/api/v1/workflows", json=definition, headers=await h.headers(Role.DEVELOPER)
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def start_run(h: AppHarness, workflow: str, run_input: dict[str, Any]) -> dict[str, Any]:
    resp = await h.client.post(
        "/api/v1/workflow-runs",
        json={"workflow": workflow, "input": run_input},
        headers=await h.headers(Role.DEVELOPER),
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def get_run(h: AppHarness, run_id: str, role: Role = Role.DEVELOPER) -> dict[str, Any]:
    resp = await h.client.get(f"/api/v1/workflow-runs/{run_id}", headers=await h.headers(role))
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def wait_run(
    h: AppHarness, run_id: str, *statuses: str, timeout: float = 20
) -> dict[str, Any]:
    """Poll the run until it is in one of ``statuses`` (default: any final state)."""
    wanted = statuses or FINAL
    last: dict[str, Any] = {}

    async def check() -> dict[str, Any] | None:
        nonlocal last
        last = await get_run(h, run_id)
        return last if last["status"] in wanted else None

    return dict(
        await wait_until(
            check,
            timeout=timeout,
            interval=0.02,
            what=f"run {run_id} in {wanted}",
            context=lambda: run_steps(last),
        )
    )


def run_steps(run: dict[str, Any]) -> dict[str, str]:
    """Step key -> status."""
    return {s["key"]: s["status"] for s in run.get("steps", [])}

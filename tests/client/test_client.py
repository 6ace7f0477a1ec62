"""The Python client against the real app (in-process transport)."""

from __future__ import annotations

import httpx
import pytest

import ymera.client
from tests.conftest import AppHarness
from ymera.client import AsyncClient, ConflictError, NotFoundError, PermissionDeniedError

PUBLIC = {
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "ValidationError",
    "YmeraAPIError",
}


def test_public_names_are_pinned() -> None:
    assert set(ymera.client.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(ymera.client, name)


def _client(h: AppHarness, **kw: str) -> AsyncClient:
    return AsyncClient("http://ymera.test", transport=httpx.ASGITransport(app=h.app), **kw)


async def test_login_agents_and_typed_errors(harness: AppHarness) -> None:
    await harness.create_user("carol", harness_role("developer"))
    async with _client(harness) as c:
        pair = await c.login("carol", "password-123456")
        assert pair["token_type"] == "bearer"
        assert (await c.me())["username"] == "carol"
        agent = await c.create_agent("sdk-agent", type="WRITER", max_concurrency=3)
        assert agent["status"] == "OFFLINE"
        with pytest.raises(ConflictError) as dup:
            await c.create_agent("sdk-agent")
        assert dup.value.code == "agent_name_taken"
        assert dup.value.status == 409
        with pytest.raises(NotFoundError):
            await c.get_agent("missing")
        with pytest.raises(PermissionDeniedError) as denied:
            await c.pause_agent(agent["id"])
        assert denied.value.code == "missing_permission"
        names = [a["name"] async for a in c.iter_agents(limit=1)]
        assert names == ["sdk-agent"]
        refreshed = await c.refresh()
        assert refreshed["refresh_token"] != pair["refresh_token"]
        assert (await c.get_agent(agent["id"]))["name"] == "sdk-agent"


async def test_api_key_client(harness: AppHarness) -> None:
    async with _client(harness, token=await harness.token_for(harness_role("admin"))) as admin:
        key = await admin.create_api_key("script", scopes=["agents:read"])
    async with _client(harness, api_key=key["key"]) as c:
        assert (await c.list_agents())["items"] == []
        with pytest.raises(PermissionDeniedError):
            await c.create_agent("nope")


def harness_role(name: str):  # type: ignore[no-untyped-def]
    from ymera.auth.permissions import Role

    return Role(name)


def test_both_clients_offer_the_same_methods() -> None:
    from ymera.client import Client

    def public(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")}

    assert public(Client) - {"close"} == public(AsyncClient) - {"aclose"}
    for name in (
        "submit_task",
        "wait_task",
        "agent_metrics",
        "set_agent_status",
        "create_workflow",
        "validate_workflow",
        "get_workflow",
        "list_workflows",
        "run_workflow",
        "get_workflow_run",
        "list_workflow_runs",
        "cancel_workflow_run",
        "retry_workflow_run",
        "wait_workflow_run",
    ):
        assert name in public(Client)


async def test_task_api(harness: AppHarness) -> None:
    token = await harness.token_for(harness_role("admin"))
    async with _client(harness, token=token) as c:
        first = await c.submit_task("echo", {"text": "hi"}, idempotency_key="k1", priority=7)
        assert (first["type"], first["status"], first["priority"]) == ("echo", "PENDING", 7)
        again = await c.submit_task("echo", {"text": "hi"}, idempotency_key="k1", priority=7)
        assert again["id"] == first["id"]
        with pytest.raises(ConflictError):
            await c.submit_task("echo", {"text": "other"}, idempotency_key="k1", priority=7)
        batch = await c.submit_tasks([{"type": "shout", "input": {"n": i}} for i in range(3)])
        assert [t["input"]["n"] for t in batch] == [0, 1, 2]

        assert (await c.get_task(first["id"]))["input"] == {"text": "hi"}
        shouts = await c.list_tasks(type="shout", limit=2)
        assert len(shouts["items"]) == 2
        assert shouts["next_cursor"]
        every = [t["id"] async for t in c.iter_tasks(type=["shout", "echo"], limit=1)]
        assert sorted(every) == sorted([first["id"], *(t["id"] for t in batch)])
        assert (await c.list_tasks(status=["SUCCEEDED"]))["items"] == []

        routing = await c.task_routing(first["id"])
        assert routing["task_id"] == first["id"]

        with pytest.raises(TimeoutError, match="still PENDING"):
            await c.wait_task(first["id"], timeout=0.2, interval=0.05)
        cancelled = await c.cancel_task(first["id"], reason="changed my mind")
        assert cancelled["status"] == "CANCELLED"
        assert (await c.wait_task(first["id"], timeout=5))["status"] == "CANCELLED"
        with pytest.raises(ConflictError):
            await c.retry_task(first["id"])  # only FAILED or DEAD re-drive
        with pytest.raises(NotFoundError):
            await c.get_task("missing")


async def test_agent_status_and_metrics(harness: AppHarness) -> None:
    token = await harness.token_for(harness_role("admin"))
    async with _client(harness, token=token) as c:
        agent = await c.create_agent("metered", max_concurrency=2)
        marked = await c.set_agent_status(agent["id"], "ERROR", reason="broken disk")
        assert (marked["status"], marked["status_reason"]) == ("ERROR", "broken disk")
        metrics = await c.agent_metrics(agent["id"], "5m")
        assert (metrics["window"], metrics["tasks"], metrics["status"]) == ("5m", 0, "ERROR")
        paused = await c.pause_agent(agent["id"])
        with pytest.raises(ConflictError) as illegal:
            await c.set_agent_status(paused["id"], "DEGRADED")
        assert illegal.value.code == "illegal_status_transition"
        assert "allowed" in illegal.value.detail

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

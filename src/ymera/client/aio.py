"""Async client (same methods as :class:`ymera.client.Client`, awaitable)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from ymera.client._base import DEFAULT_TIMEOUT, auth_headers, clean_params, handle


class AsyncClient:
    """Async YMERA API client; use as ``async with AsyncClient(url, api_key=...) as c``."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = api_key or token
        self._refresh: str | None = None
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        headers = {**auth_headers(self._token), **kw.pop("headers", {})}
        if "params" in kw:
            kw["params"] = clean_params(kw["params"])
        return handle(await self._http.request(method, path, headers=headers, **kw))

    async def login(self, username: str, password: str) -> dict[str, Any]:
        pair = await self.request(
            "POST", "/api/v1/auth/token", data={"username": username, "password": password}
        )
        self._token = pair["access_token"]
        self._refresh = pair["refresh_token"]
        return dict(pair)

    async def refresh(self) -> dict[str, Any]:
        pair = await self.request(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": self._refresh}
        )
        self._token = pair["access_token"]
        self._refresh = pair["refresh_token"]
        return dict(pair)

    async def me(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/v1/auth/me"))

    async def create_api_key(
        self,
        name: str,
        *,
        scopes: list[str] | None = None,
        agent_id: str | None = None,
        expires_at: str | None = None,
    ) -> dict[str, Any]:
        body = clean_params(
            {"name": name, "scopes": scopes, "agent_id": agent_id, "expires_at": expires_at}
        )
        return dict(await self.request("POST", "/api/v1/api-keys", json=body))

    async def create_agent(self, name: str, **fields: Any) -> dict[str, Any]:
        return dict(await self.request("POST", "/api/v1/agents", json={"name": name, **fields}))

    async def get_agent(self, agent_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/v1/agents/{agent_id}"))

    async def list_agents(self, **params: Any) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/v1/agents", params=params))

    async def iter_agents(self, **params: Any) -> AsyncIterator[dict[str, Any]]:
        cursor = None
        while True:
            page = await self.list_agents(**params, cursor=cursor)
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def update_agent(self, agent_id: str, **fields: Any) -> dict[str, Any]:
        return dict(await self.request("PATCH", f"/api/v1/agents/{agent_id}", json=fields))

    async def delete_agent(self, agent_id: str, *, force: bool = False) -> None:
        await self.request("DELETE", f"/api/v1/agents/{agent_id}", params={"force": force or None})

    async def pause_agent(self, agent_id: str, reason: str | None = None) -> dict[str, Any]:
        return dict(
            await self.request(
                "POST", f"/api/v1/agents/{agent_id}/pause", params={"reason": reason}
            )
        )

    async def resume_agent(self, agent_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/v1/agents/{agent_id}/resume"))

    async def heartbeat(self, agent_id: str, load: int | None = None) -> dict[str, Any]:
        body = {"load": load} if load is not None else None
        return dict(await self.request("POST", f"/api/v1/agents/{agent_id}/heartbeat", json=body))

    async def list_events(self, **params: Any) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/v1/events", params=params))

"""Blocking client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from ymera.client._base import DEFAULT_TIMEOUT, auth_headers, clean_params, handle


class Client:
    """Blocking YMERA API client.

    ``Client(url, api_key="ymk_...")`` or ``Client(url).login(username, password)``.
    Errors raise subclasses of :class:`ymera.client.YmeraAPIError`.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = api_key or token
        self._refresh: str | None = None
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        headers = {**auth_headers(self._token), **kw.pop("headers", {})}
        if "params" in kw:
            kw["params"] = clean_params(kw["params"])
        return handle(self._http.request(method, path, headers=headers, **kw))

    # auth
    def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in; later calls use the access token."""
        pair = self.request(
            "POST", "/api/v1/auth/token", data={"username": username, "password": password}
        )
        self._token = pair["access_token"]
        self._refresh = pair["refresh_token"]
        return dict(pair)

    def refresh(self) -> dict[str, Any]:
        """Rotate the refresh token and take the new access token."""
        pair = self.request("POST", "/api/v1/auth/refresh", json={"refresh_token": self._refresh})
        self._token = pair["access_token"]
        self._refresh = pair["refresh_token"]
        return dict(pair)

    def me(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/auth/me"))

    # users
    def create_user(self, username: str, password: str, role: str = "viewer") -> dict[str, Any]:
        body = {"username": username, "password": password, "role": role}
        return dict(self.request("POST", "/api/v1/users", json=body))

    def list_users(self, *, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/users", params={"cursor": cursor, "limit": limit}))

    # API keys
    def create_api_key(
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
        return dict(self.request("POST", "/api/v1/api-keys", json=body))

    def list_api_keys(self, **params: Any) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/api-keys", params=params))

    def revoke_api_key(self, key_id: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/api/v1/api-keys/{key_id}"))

    # agents
    def create_agent(self, name: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/api/v1/agents", json={"name": name, **fields}))

    def get_agent(self, agent_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/agents/{agent_id}"))

    def list_agents(self, **params: Any) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/agents", params=params))

    def iter_agents(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Every agent matching the filters, following the cursor."""
        cursor = None
        while True:
            page = self.list_agents(**params, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def update_agent(self, agent_id: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/api/v1/agents/{agent_id}", json=fields))

    def delete_agent(self, agent_id: str, *, force: bool = False) -> None:
        self.request("DELETE", f"/api/v1/agents/{agent_id}", params={"force": force or None})

    def pause_agent(self, agent_id: str, reason: str | None = None) -> dict[str, Any]:
        return dict(
            self.request("POST", f"/api/v1/agents/{agent_id}/pause", params={"reason": reason})
        )

    def resume_agent(self, agent_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/api/v1/agents/{agent_id}/resume"))

    def heartbeat(self, agent_id: str, load: int | None = None) -> dict[str, Any]:
        body = {"load": load} if load is not None else None
        return dict(self.request("POST", f"/api/v1/agents/{agent_id}/heartbeat", json=body))

    # events
    def list_events(self, **params: Any) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/events", params=params))

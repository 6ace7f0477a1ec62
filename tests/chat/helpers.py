"""Helpers of the chat tests: users with tokens, sessions, a WebSocket client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ymera.auth.permissions import Role


async def user(harness: Any, name: str, role: Role = Role.DEVELOPER) -> tuple[str, dict[str, str]]:
    """A new user's id and auth headers."""
    user_id = await harness.create_user(name, role)
    token = (await harness.login(name))["access_token"]
    return user_id, {"Authorization": f"Bearer {token}"}


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].split(" ", 1)[1]


async def new_session(
    client: httpx.AsyncClient, headers: dict[str, str], *members: dict[str, str], title: str = "t"
) -> dict[str, Any]:
    resp = await client.post(
        "/api/v1/chat/sessions",
        json={"title": title, "participants": list(members)},
        headers=headers,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def post(
    client: httpx.AsyncClient, headers: dict[str, str], session_id: str, content: str, **extra: Any
) -> dict[str, Any]:
    resp = await client.post(
        f"/api/v1/chat/sessions/{session_id}/messages",
        json={"content": content, **extra},
        headers=headers,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def close_code(ws: ClientConnection, timeout: float = 10.0) -> int | None:
    """Read until the server closes the connection; its close code."""

    async def drain() -> None:
        while True:
            await ws.recv()

    try:
        await asyncio.wait_for(drain(), timeout)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None
    raise AssertionError("still open")


def ws_url(base_url: str, session_id: str) -> str:
    return base_url.replace("http://", "ws://") + f"/api/v1/chat/sessions/{session_id}/ws"


class ChatClient:
    """A real WebSocket client of one session: hello, then frames by type."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def connect(
        cls,
        base_url: str,
        session_id: str,
        token: str,
        *,
        last_seq: int | None = None,
        via_subprotocol: bool = False,
        **kwargs: Any,
    ) -> ChatClient:
        hello: dict[str, Any] = {"type": "hello"}
        if last_seq is not None:
            hello["last_seq"] = last_seq
        if via_subprotocol:
            kwargs["subprotocols"] = ["ymera.chat.v1", f"bearer.{token}"]
        else:
            hello["token"] = token
        ws = await websockets.connect(ws_url(base_url, session_id), **kwargs)
        await ws.send(json.dumps(hello))
        client = cls(ws)
        client.welcome = await client.expect("welcome")
        return client

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return dict(json.loads(raw))

    async def expect(self, kind: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """The next frame of type ``kind`` with those ``fields`` (other frames before
        it are skipped)."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind!r} frame in {timeout}s; saw {seen}")
            try:
                frame = await self.recv(remaining)
            except TimeoutError:
                raise AssertionError(f"no {kind!r} frame in {timeout}s; saw {seen}") from None
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame
            seen.append(str(frame.get("type")))

    async def messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next ``count`` message frames (other frames skipped)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"got {len(out)} of {count} messages: {out[-3:]}")
            out.append(await self.expect("message", remaining))
        return out

    async def close(self) -> None:
        await self.ws.close()

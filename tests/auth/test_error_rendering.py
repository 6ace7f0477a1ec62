"""How refusals are rendered (``ymera.errors``): problem+json over HTTP, denial
responses and close codes over WebSocket, a complete ``Allow`` on 405, and
unstorable text as a 400 instead of a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from sqlalchemy.exc import DBAPIError

from ymera.errors import PROBLEM_JSON, Forbidden, Unauthorized
from ymera.problems import install_handlers


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def build_app() -> FastAPI:
    app = FastAPI()
    install_handlers(app)

    @app.get("/things")
    async def list_things() -> list[str]:
        return []

    @app.post("/things")
    async def add_thing() -> None:
        return None

    @app.delete("/things")
    async def clear_things() -> None:
        return None

    @app.get("/things/{thing_id}")
    async def get_thing(thing_id: str) -> None:
        return None

    @app.post("/things/bulk")
    async def add_things() -> None:
        return None

    @app.get("/db/{sqlstate}")
    async def db_error(sqlstate: str) -> None:
        raise DBAPIError("SELECT 1", {}, _PgError(sqlstate))

    @app.websocket("/ws/before-accept")
    async def refuse(websocket: WebSocket) -> None:
        raise Unauthorized("Authentication required")

    @app.websocket("/ws/after-accept")
    async def refuse_later(websocket: WebSocket) -> None:
        await websocket.accept()
        raise Forbidden("Not yours", code="not_owner")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def websocket_messages(path: str, *, denial_extension: bool = True) -> list[dict[str, Any]]:
    """Everything the app sends on a WebSocket handshake, up to its end."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t")],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if denial_extension else {},
    }
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.close" or not message.get("more_body", True):
            inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})

    await asyncio.wait_for(build_app()(scope, inbox.get, send), timeout=5)
    return sent


async def test_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    resp = await client.put("/things")
    assert resp.status_code == 405
    assert resp.headers["content-type"].startswith(PROBLEM_JSON)
    assert resp.headers["allow"] == "DELETE, GET, POST"
    assert resp.json()["code"] == "method_not_allowed"
    # A fixed path names its resource, even where a template would match it too.
    assert (await client.put("/things/bulk")).headers["allow"] == "POST"
    assert (await client.put("/things/42")).headers["allow"] == "GET"


async def test_unstorable_text_is_a_400_and_other_database_errors_stay_500(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/db/22021")
    assert resp.status_code == 400
    assert resp.json()["code"] == "invalid_text"
    other = await client.get("/db/40001")
    assert other.status_code == 500
    assert other.json()["code"] == "internal_error"


async def test_websocket_refused_before_accept_gets_an_http_denial() -> None:
    start, body = await websocket_messages("/ws/before-accept")
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 401
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert headers["content-type"].startswith(PROBLEM_JSON)
    assert headers["www-authenticate"] == "Bearer"
    assert body["type"] == "websocket.http.response.body"
    assert json.loads(body["body"])["code"] == "unauthorized"


async def test_websocket_refused_without_denial_support_is_closed() -> None:
    sent = await websocket_messages("/ws/before-accept", denial_extension=False)
    assert [m["type"] for m in sent] == ["websocket.close"]


async def test_websocket_refused_after_accept_is_closed_with_4000_plus_status() -> None:
    accept, close = await websocket_messages("/ws/after-accept")
    assert accept["type"] == "websocket.accept"
    assert close["type"] == "websocket.close"
    assert close["code"] == 4403
    assert close["reason"] == "Not yours"

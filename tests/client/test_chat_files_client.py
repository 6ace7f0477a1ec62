"""The clients' chat and files methods against the real app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role
from ymera.client import AsyncClient, Client, ValidationError


@pytest.mark.parametrize("backend", ["sqlite-memory"], indirect=True)
async def test_async_client_chat_and_files(harness: AppHarness) -> None:
    await harness.create_user("bob", Role.DEVELOPER)
    token = await harness.token_for(Role.DEVELOPER)
    transport = httpx.ASGITransport(app=harness.app)
    async with AsyncClient("http://ymera.test", token=token, transport=transport) as c:

        async def chunks() -> AsyncIterator[bytes]:
            yield b"hello "
            yield b"files"

        meta = await c.upload_file("note.txt", chunks(), tags=["x"], ttl_seconds=60)
        assert meta["size"] == 11
        assert await c.download_file(meta["id"]) == b"hello files"
        session = await c.create_chat_session("sdk", ["bob"])
        assert len(session["participants"]) == 2
        sid = session["id"]
        first = await c.post_chat_message(sid, "see file", file_ids=[meta["id"]])
        second = await c.post_chat_message(sid, "second")
        assert (first["seq"], second["seq"]) == (1, 2)
        page = await c.chat_history(sid, after_seq=1)
        assert [m["content"] for m in page["items"]] == ["second"]
        assert (await c.get_file(meta["id"]))["attached_to"][0]["type"] == "chat_message"
        with pytest.raises(ValidationError) as err:
            await c.post_chat_message(sid, "ask", to="no-such-agent")
        assert err.value.code == "unknown_agent"
        listed = await c.list_chat_sessions()
        assert [s["id"] for s in listed["items"]] == [sid]
        assert (await c.archive_chat_session(sid))["status"] == "archived"
        await c.delete_file(meta["id"])
        assert (await c.list_files())["items"] == []


@pytest.mark.parametrize("backend", ["sqlite-memory"], indirect=True)
async def test_sync_client_chat(live: LiveServer) -> None:
    token = await live.harness.token_for(Role.DEVELOPER)

    def scenario() -> dict[str, Any]:
        with Client(live.base_url, token=token) as c:
            sid = c.create_chat_session("sync")["id"]
            c.post_chat_message(sid, "one")
            c.post_chat_message(sid, "two")
            return c.chat_history(sid, limit=1)

    page = await asyncio.to_thread(scenario)
    assert [m["content"] for m in page["items"]] == ["two"]
    assert page["next_cursor"]

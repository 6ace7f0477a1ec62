"""The chat WebSocket against a real server (uvicorn on loopback) with real
websockets clients: auth, broadcast, resume, reload, typing, presence, removal,
slow consumers."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
import websockets

from tests.chat.helpers import (
    ChatClient,
    close_code,
    new_session,
    post,
    token_of,
    user,
    ws_url,
)
from tests.fixtures.backends import Backend
from tests.fixtures.live import LiveServer
from tests.fixtures.waiting import wait_until
from ymera.auth.dependencies import authenticate
from ymera.chat import service
from ymera.config import Settings
from ymera.tasks.schemas import RetryPolicy


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings(
        chat={
            "max_resume_gap": 30,
            "send_queue_size": 10,
            "max_message_chars": 2_000_000,
            "resync_interval": 0.3,
        }
    )


async def test_handshake_refusals(live: LiveServer) -> None:
    h = live.harness
    _, alice = await user(h, "alice")
    _, carol = await user(h, "carol")
    sid = (await new_session(h.client, alice))["id"]
    url = ws_url(live.base_url, sid)
    cases = [
        ({"type": "nope"}, 4400),
        ({"type": "hello"}, 4401),
        ({"type": "hello", "token": "garbage"}, 4401),
        ({"type": "hello", "token": token_of(alice), "last_seq": -1}, 4400),
        ({"type": "hello", "token": token_of(carol)}, 4404),  # not a participant
    ]
    for hello, code in cases:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps(hello))
            assert await close_code(ws) == code, hello


async def test_broadcast_ack_and_subprotocol_auth(live: LiveServer) -> None:
    h = live.harness
    _, alice = await user(h, "alice")
    bob_id, bob = await user(h, "bob")
    sid = (await new_session(h.client, alice, {"user": bob_id}))["id"]
    a = await ChatClient.connect(live.base_url, sid, token_of(alice))
    b = await ChatClient.connect(live.base_url, sid, token_of(bob), via_subprotocol=True)
    assert b.ws.subprotocol == "ymera.chat.v1"
    assert b.welcome["participant_id"] == f"user:{bob_id}"
    assert b.welcome["last_seq"] == 0
    await a.ws.send(json.dumps({"type": "message", "content": "hello", "client_id": "c1"}))
    ack = await a.expect("ack")
    assert ack["client_id"] == "c1"
    assert ack["seq"] == 1
    for client in (a, b):
        (frame,) = await client.messages(1)
        assert frame["seq"] == 1
        assert frame["recovered"] is False
        assert frame["message"]["content"] == "hello"
        assert frame["message"]["id"] == ack["id"]
    await post(h.client, bob, sid, "over rest")
    for client in (a, b):
        (frame,) = await client.messages(1)
        assert (frame["seq"], frame["message"]["content"]) == (2, "over rest")
    # A refused frame answers an error, the connection stays.
    await a.ws.send(json.dumps({"type": "message", "content": "", "client_id": "c2"}))
    error = await a.expect("error")
    assert (error["code"], error["client_id"]) == ("validation_error", "c2")
    await a.ws.send(json.dumps({"type": "ping", "t": 1}))
    assert (await a.expect("pong"))["t"] == 1
    await a.close()
    await b.close()


async def test_resume_after_forced_disconnect_loses_and_duplicates_nothing(
    live: LiveServer,
) -> None:
    h = live.harness
    _, alice = await user(h, "alice")
    bob_id, bob = await user(h, "bob")
    sid = (await new_session(h.client, alice, {"user": bob_id}))["id"]
    total = 24
    b = await ChatClient.connect(live.base_url, sid, token_of(bob))
    received: list[int] = []
    posted = 0

    async def poster() -> None:
        nonlocal posted
        for i in range(total):
            await post(h.client, alice, sid, f"m{i + 1}")
            posted += 1

    job = asyncio.create_task(poster())
    # Read a few live, then cut the connection without a close handshake.
    for frame in await b.messages(5):
        received.append(frame["seq"])
    b.ws.transport.abort()
    await wait_until(lambda: posted >= 12, timeout=20, what="posts while disconnected")
    # Reconnect with the last seq seen, while the poster keeps going.
    b = await ChatClient.connect(live.base_url, sid, token_of(bob), last_seq=received[-1])
    assert b.welcome["resumed_from"] == 5
    recovered_flags = []
    while len(received) < total:
        frame = await b.expect("message", timeout=20)
        received.append(frame["seq"])
        recovered_flags.append(frame["recovered"])
    await job
    assert received == list(range(1, total + 1))  # in order, none lost, none twice
    # What was missed came first, flagged; then the live ones.
    assert recovered_flags[0] is True
    assert recovered_flags == sorted(recovered_flags, reverse=True)
    await post(h.client, alice, sid, "after")
    (frame,) = await b.messages(1)
    assert (frame["seq"], frame["recovered"]) == (25, False)
    await b.close()


async def test_too_large_a_gap_asks_to_reload(live: LiveServer) -> None:
    h = live.harness
    _, alice = await user(h, "alice")
    sid = (await new_session(h.client, alice))["id"]
    for i in range(35):
        await post(h.client, alice, sid, f"m{i}")
    a = await ChatClient.connect(live.base_url, sid, token_of(alice), last_seq=2)
    reload = await a.expect("reload")
    assert reload["reason"] == "gap_too_large"
    assert (reload["from_seq"], reload["last_seq"]) == (2, 35)
    # Live from there on.
    await post(h.client, alice, sid, "live")
    (frame,) = await a.messages(1)
    assert (frame["seq"], frame["recovered"]) == (36, False)
    # A gap within the limit is replayed.
    c = await ChatClient.connect(live.base_url, sid, token_of(alice), last_seq=20)
    frames = await c.messages(16)
    assert [f["seq"] for f in frames] == list(range(21, 37))
    assert all(f["recovered"] for f in frames)
    await a.close()
    await c.close()


async def test_typing_presence_and_removal(live: LiveServer) -> None:
    h = live.harness
    _, alice = await user(h, "alice")
    bob_id, bob = await user(h, "bob")
    sid = (await new_session(h.client, alice, {"user": bob_id}))["id"]
    a = await ChatClient.connect(live.base_url, sid, token_of(alice))
    b = await ChatClient.connect(live.base_url, sid, token_of(bob))
    presence = await a.expect("presence", participant_id=f"user:{bob_id}")
    assert presence["status"] == "online"
    assert f"user:{bob_id}" in b.welcome["online"]
    assert len(b.welcome["online"]) == 2
    await b.ws.send(json.dumps({"type": "typing"}))
    typing = await a.expect("typing")
    assert typing["participant_id"] == f"user:{bob_id}"
    # Removing bob closes his socket with 4403; alice learns he went offline.
    resp = await h.client.delete(
        f"/api/v1/chat/sessions/{sid}/participants/user:{bob_id}", headers=alice
    )
    assert resp.status_code == 204
    assert await close_code(b.ws) == 4403
    offline = await a.expect("presence", participant_id=f"user:{bob_id}", status="offline")
    assert "replica" not in offline
    await a.close()


async def test_a_client_that_reads_too_slowly_is_cut_with_4408(live: LiveServer) -> None:
    h = live.harness
    _, alice = await user(h, "alice")
    sid = (await new_session(h.client, alice))["id"]
    hub = h.state.extras["chat_hub"]
    # max_queue=1: the client stops reading its socket after one unread frame.
    slow = await ChatClient.connect(live.base_url, sid, token_of(alice), max_queue=1)
    big = secrets.token_urlsafe(375_000)  # 500 KB that permessage-deflate cannot shrink

    def cut() -> bool:
        return not any(not c.closed for c in hub.connections())

    for _ in range(200):
        if cut():
            break
        await post(h.client, alice, sid, big)
    await wait_until(cut, timeout=10, what="the slow client to be cut")
    assert await close_code(slow.ws, timeout=20) == 4408


async def _post_unpublished(h: Any, headers: dict[str, str], sid: str, content: str) -> None:
    """Store a message whose publication is lost (its frames dropped before commit)."""
    principal = await authenticate(h.state, token_of(headers))
    async with h.state.db.transaction() as session:
        await service.post_message(
            session,
            principal=principal,
            session_id=sid,
            content=content,
            file_ids=[],
            to=None,
            now=h.state.clock.now(),
            default_retry=RetryPolicy(),
        )
        service.take_outgoing(session.info)


async def test_a_lost_publication_is_caught_up_from_the_database(live: LiveServer) -> None:
    h = live.harness
    _, alice = await user(h, "alice")
    sid = (await new_session(h.client, alice))["id"]
    a = await ChatClient.connect(live.base_url, sid, token_of(alice))
    await post(h.client, alice, sid, "one")
    await _post_unpublished(h, alice, sid, "two (never published)")
    await post(h.client, alice, sid, "three")
    frames = await a.messages(3)
    # The room read "two" from the database (the gap before "three", or its periodic check).
    assert [(f["seq"], f["message"]["content"]) for f in frames] == [
        (1, "one"),
        (2, "two (never published)"),
        (3, "three"),
    ]
    # With nothing after it, the idle room's periodic check finds it.
    await _post_unpublished(h, alice, sid, "four (never published)")
    (frame,) = await a.messages(1)
    assert (frame["seq"], frame["recovered"]) == (4, False)
    await a.close()

"""Application-level keepalive of the chat WebSocket: pings, and the cut of a
client that stops answering them."""

from __future__ import annotations

import json

import pytest

from tests.chat.helpers import ChatClient, close_code, new_session, post, token_of, user
from tests.fixtures.backends import Backend
from tests.fixtures.live import LiveServer
from ymera.config import Settings


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings(chat={"ping_interval": 0.2, "ping_timeout": 0.4})


@pytest.mark.parametrize("backend", ["sqlite-memory"], indirect=True)
async def test_pings_answered_keep_the_connection_and_silence_cuts_it(live: LiveServer) -> None:
    h = live.harness
    _, alice = await user(h, "alice")
    sid = (await new_session(h.client, alice))["id"]
    answering = await ChatClient.connect(live.base_url, sid, token_of(alice))
    silent = await ChatClient.connect(live.base_url, sid, token_of(alice))
    assert answering.welcome["ping_interval"] == 0.2
    # Answer three pings: the connection outlives several ping timeouts.
    for _ in range(3):
        ping = await answering.expect("ping", timeout=5)
        await answering.ws.send(json.dumps({"type": "pong", "t": ping["t"]}))
    # The silent one has been cut meanwhile, with the documented code.
    assert await close_code(silent.ws) == 4410
    await post(h.client, alice, sid, "still here?")
    (frame,) = await answering.messages(1)
    assert frame["message"]["content"] == "still here?"
    await answering.close()

"""Chat across two ``ymera serve`` replicas on one PostgreSQL database and one Redis
bus (issue 6 point 7): a client on replica A receives what is posted on replica B;
a client cut off without a close handshake resumes on the other replica and gets
exactly what it missed, once, in order; an agent connected to B answers a
question asked on A, its chunks and its reply reaching clients on both; when B
is killed, its participants go offline on A within the presence TTL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.chat.helpers import ChatClient
from tests.fixtures import services
from tests.fixtures.process import ProcessManager
from tests.fixtures.waiting import wait_until
from tests.fixtures.workers import YmeraServer, fast_settings, start_worker

pytestmark = pytest.mark.system

SHARED_SECRET = "system-test-shared-secret-0123456789abcdef"
PASSWORD = "bob-password-123456"
PRESENCE_TTL = 1.5


@pytest.fixture
def cluster_env() -> Iterator[dict[str, str]]:
    with services.postgres_redis_env("ymera_chat_replicas") as env:
        yield {**env, "YMERA_AUTH__SECRET_KEY": SHARED_SECRET}


def _ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.request.url} -> {resp.status_code} {resp.text}"
    return resp.json()


async def test_chat_across_two_replicas_over_redis(
    cluster_env: dict[str, str], processes: ProcessManager, tmp_path: Any
) -> None:
    env = {**fast_settings(extra={"YMERA_CHAT__PRESENCE_TTL": str(PRESENCE_TTL)}), **cluster_env}
    a = YmeraServer(processes, tmp_path / "a", env=env, name="replica-a")
    a.start()
    b = YmeraServer(processes, tmp_path / "b", env=env, name="replica-b")
    b.token = a.token  # one admin, one secret: the token works on both
    b.start()
    admin = a.api()
    bob_id = _ok(
        admin.http.post(
            "/api/v1/users", json={"username": "bob", "password": PASSWORD, "role": "developer"}
        ),
        201,
    )["id"]
    agent, key = admin.create_worker_agent("chatbot", ["talk"])
    start_worker(processes, "bot-on-b", b.url, key)
    admin.wait_agent(agent["id"], "IDLE")
    bob_token = _ok(
        httpx.post(f"{b.url}/api/v1/auth/token", data={"username": "bob", "password": PASSWORD})
    )["access_token"]
    alice_token = a.token
    assert alice_token is not None
    sid = _ok(
        admin.http.post(
            "/api/v1/chat/sessions",
            json={"title": "two replicas", "participants": [{"user": "bob"}]},
        ),
        201,
    )["id"]

    async with (
        httpx.AsyncClient(
            base_url=a.url, headers={"Authorization": f"Bearer {alice_token}"}
        ) as on_a,
        httpx.AsyncClient(base_url=b.url, headers={"Authorization": f"Bearer {bob_token}"}) as on_b,
    ):

        async def post(client: httpx.AsyncClient, content: str, **extra: Any) -> dict[str, Any]:
            resp = await client.post(
                f"/api/v1/chat/sessions/{sid}/messages", json={"content": content, **extra}
            )
            return dict(_ok(resp, 201))

        alice = await ChatClient.connect(a.url, sid, alice_token)
        bob = await ChatClient.connect(b.url, sid, bob_token)
        # Posted on B (REST), received on A.
        await post(on_b, "from b")
        (frame,) = await alice.messages(1)
        assert (frame["seq"], frame["message"]["content"]) == (1, "from b")
        # Posted on A (WebSocket), received on B.
        await alice.ws.send(json.dumps({"type": "message", "content": "from a"}))
        frames = await bob.messages(2)
        assert [(f["seq"], f["message"]["content"]) for f in frames] == [
            (1, "from b"),
            (2, "from a"),
        ]
        # Bob is cut off on B while messages keep coming on A, and resumes on A.
        bob.ws.transport.abort()
        total = 30
        posted: list[int] = []

        async def keep_posting() -> None:
            for i in range(total):
                posted.append((await post(on_a, f"burst {i}"))["seq"])

        job = asyncio.create_task(keep_posting())
        await wait_until(lambda: len(posted) >= 10, timeout=20, what="posts while bob is away")
        bob = await ChatClient.connect(a.url, sid, bob_token, last_seq=2)
        got = [f["seq"] for f in await bob.messages(total, timeout=30)]
        await job
        assert got == list(range(3, 3 + total))  # none lost, none twice, in order
        # An agent connected to B answers a question asked on A.
        asked = await post(on_a, "how are you", to={"agent": "chatbot"})
        for client in (alice, bob):
            chunks, reply = await _until_reply(client, asked["id"])
            # Streamed while the agent worked (on B), before its reply was stored.
            assert "".join(c["chunk"] for c in chunks if c["task_id"] == asked["task_id"]) == (
                "how are you "
            )
            assert reply["message"]["content"] == "bot-on-b heard: how are you"
            assert reply["message"]["sender_id"] == f"agent:{agent['id']}"
            assert reply["seq"] == 3 + total + 1
        # Bob moves back to B alone; B crashes (no goodbye on the bus): A shows
        # him offline once B has been silent for the presence TTL.
        await bob.close()
        await alice.expect("presence", participant_id=f"user:{bob_id}", status="offline")
        bob = await ChatClient.connect(b.url, sid, bob_token)
        await alice.expect("presence", participant_id=f"user:{bob_id}", status="online")
        b.kill()
        gone = await alice.expect(
            "presence", participant_id=f"user:{bob_id}", status="offline", timeout=15
        )
        assert "replica" not in gone
        await alice.close()


async def _until_reply(
    client: ChatClient, message_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The chunk frames received, then the reply to ``message_id``."""
    chunks = []
    while True:
        frame = await client.recv(timeout=20)
        if frame["type"] == "chunk":
            chunks.append(frame)
        elif frame["type"] == "message" and frame["message"]["reply_to"] == message_id:
            return chunks, frame

"""Agents in chat: a message addressed to an agent becomes a `chat` task; the
agent's streamed output reaches the session as chunks and its result is stored
as one message, in the transaction that ends the task."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.chat.helpers import ChatClient, new_session, post, token_of, user
from tests.fixtures.live import LiveServer
from tests.tasks.test_worker_e2e import make_agent, running, wait_task
from ymera.auth.permissions import Role
from ymera.worker import TaskContext, TaskFailed, Worker


async def test_agent_answers_with_streamed_chunks_then_one_message(live: LiveServer) -> None:
    h = live.harness
    _, alice = await user(h, "alice")
    agent, key = await make_agent(h, "helper", capabilities=[{"name": "talk", "proficiency": 1}])
    sid = (await new_session(h.client, alice, {"user": "alice"}))["id"]
    worker = Worker(live.base_url, key, concurrency=2)
    release = asyncio.Event()
    inputs: list[dict[str, Any]] = []

    @worker.handler("chat")
    async def chat(ctx: TaskContext) -> dict[str, Any]:
        inputs.append(ctx.input)
        if ctx.input["content"] == "fail please":
            raise TaskFailed("cannot", retryable=False)
        ctx.stream("Hel")
        ctx.stream("lo, ")
        await release.wait()
        return {"content": f"Hello, {ctx.input['content']}"}

    async with running(worker):
        a = await ChatClient.connect(live.base_url, sid, token_of(alice))
        await post(h.client, alice, sid, "before")
        asked = await post(h.client, alice, sid, "world", to={"agent": "helper"})
        assert asked["task_id"]
        assert asked["addressed_to"] == {"agent": "helper"}
        frames = await a.messages(2)
        assert [f["message"]["content"] for f in frames] == ["before", "world"]
        chunks = [await a.expect("chunk", timeout=10) for _ in range(2)]
        assert [c["chunk"] for c in chunks] == ["Hel", "lo, "]
        assert all(c["task_id"] == asked["task_id"] for c in chunks)
        assert all(c["reply_to"] == asked["id"] for c in chunks)
        release.set()
        (reply,) = await a.messages(1, timeout=10)
        body = reply["message"]
        assert reply["seq"] == 3
        assert body["kind"] == "agent_reply"
        assert body["content"] == "Hello, world"
        assert body["sender_id"] == f"agent:{agent['id']}"
        assert (body["reply_to"], body["task_id"]) == (asked["id"], asked["task_id"])
        done = await wait_task(h, asked["task_id"], "SUCCEEDED")
        assert done["type"] == "chat"
        # The agent saw the question with the history before it.
        assert inputs[0]["session_id"] == sid
        assert [m["content"] for m in inputs[0]["history"]] == ["before"]
        # A failing agent: its failure is told in the session.
        failing = await post(h.client, alice, sid, "fail please", to={"agent": agent["id"]})
        frames = await a.messages(2, timeout=10)
        assert frames[0]["message"]["id"] == failing["id"]
        assert frames[1]["message"]["kind"] == "agent_error"
        assert "cannot" in frames[1]["message"]["content"]
        await a.close()
    session = (await h.client.get(f"/api/v1/chat/sessions/{sid}", headers=alice)).json()
    assert f"agent:{agent['id']}" in {p["participant_id"] for p in session["participants"]}
    history = (await h.client.get(f"/api/v1/chat/sessions/{sid}/messages", headers=alice)).json()
    assert [m["seq"] for m in history["items"]] == [1, 2, 3, 4, 5]


async def test_unknown_agent_is_422_and_takes_no_seq(live: LiveServer) -> None:
    h = live.harness
    _, alice = await user(h, "alice")
    sid = (await new_session(h.client, alice))["id"]
    resp = await h.client.post(
        f"/api/v1/chat/sessions/{sid}/messages",
        json={"content": "hi", "to": {"agent": "nobody"}},
        headers=alice,
    )
    assert resp.status_code == 422
    assert resp.json()["code"] == "unknown_agent"
    assert (await post(h.client, alice, sid, "ok"))["seq"] == 1


async def test_question_to_a_busy_agent_waits_for_it(live: LiveServer) -> None:
    """Addressed by name, only that agent answers: while it is busy the question
    waits (another agent that takes `chat` tasks answers other questions meanwhile)."""
    h = live.harness
    _, alice = await user(h, "alice")
    helper, helper_key = await make_agent(h, "helper", max_concurrency=1)
    other, other_key = await make_agent(h, "other", max_concurrency=1)
    sid = (await new_session(h.client, alice))["id"]
    release = asyncio.Event()
    busy = Worker(live.base_url, helper_key, concurrency=1)
    spare = Worker(live.base_url, other_key, concurrency=1)

    @busy.handler("chat")
    async def slow(ctx: TaskContext) -> dict[str, Any]:
        await release.wait()
        return {"content": f"helper: {ctx.input['content']}"}

    @spare.handler("chat")
    async def quick(ctx: TaskContext) -> dict[str, Any]:
        return {"content": f"other: {ctx.input['content']}"}

    async with running(busy), running(spare):
        first = await post(h.client, alice, sid, "one", to={"agent": "helper"})
        await wait_task(h, first["task_id"], "RUNNING")
        pinned = await post(h.client, alice, sid, "two", to={"agent": "helper"})
        anyone = await post(h.client, alice, sid, "three", to={})
        # The later, unpinned question went to the free agent; the pinned one,
        # ahead of it in the queue, was not given to it.
        done = await wait_task(h, anyone["task_id"], "SUCCEEDED")
        assert done["agent_id"] == other["id"]
        admin = await h.headers(Role.ADMIN)
        waiting = (await h.client.get(f"/api/v1/tasks/{pinned['task_id']}", headers=admin)).json()
        assert (waiting["status"], waiting["agent_id"]) == ("PENDING", None)
        assert waiting["preferred_only"] is True
        release.set()
        answered = await wait_task(h, pinned["task_id"], "SUCCEEDED")
        assert answered["agent_id"] == helper["id"]
        assert answered["result"] == {"content": "helper: two"}
        routing = (
            await h.client.get(f"/api/v1/tasks/{pinned['task_id']}/routing", headers=admin)
        ).json()
        assert routing["decision"]["chosen"]["agent_id"] == helper["id"]

"""REST: sessions, participants, messages numbered per session, history pages."""

from __future__ import annotations

import asyncio

from tests.chat.helpers import new_session, post, user
from tests.conftest import AppHarness
from ymera.auth.permissions import Role


async def test_create_get_list_and_archive(harness: AppHarness) -> None:
    client = harness.client
    alice_id, alice = await user(harness, "alice")
    bob_id, bob = await user(harness, "bob")
    _, carol = await user(harness, "carol")
    created = await new_session(client, alice, {"user": "bob"}, title="design")
    assert created["title"] == "design"
    assert created["status"] == "active"
    assert created["last_seq"] == 0
    assert {p["participant_id"] for p in created["participants"]} == {
        f"user:{alice_id}",
        f"user:{bob_id}",
    }
    sid = created["id"]
    assert (await client.get(f"/api/v1/chat/sessions/{sid}", headers=bob)).status_code == 200
    # Not a participant: as if it did not exist.
    resp = await client.get(f"/api/v1/chat/sessions/{sid}", headers=carol)
    assert resp.status_code == 404
    assert resp.json()["code"] == "chat_session_not_found"
    listed = (await client.get("/api/v1/chat/sessions", headers=bob)).json()
    assert [s["id"] for s in listed["items"]] == [sid]
    assert (await client.get("/api/v1/chat/sessions", headers=carol)).json()["items"] == []
    # Admins see everything.
    admin = await harness.headers(Role.ADMIN)
    assert (await client.get(f"/api/v1/chat/sessions/{sid}", headers=admin)).status_code == 200
    # Only the creator (or an admin) archives.
    resp = await client.post(f"/api/v1/chat/sessions/{sid}/archive", headers=bob)
    assert resp.status_code == 403
    resp = await client.post(f"/api/v1/chat/sessions/{sid}/archive", headers=alice)
    assert resp.status_code == 200
    assert resp.json()["status"] == "archived"
    resp = await client.post(
        f"/api/v1/chat/sessions/{sid}/messages", json={"content": "late"}, headers=bob
    )
    assert resp.status_code == 409
    assert resp.json()["code"] == "chat_session_archived"
    active = await client.get("/api/v1/chat/sessions?status=active", headers=alice)
    assert active.json()["items"] == []


async def test_unknown_participant_is_422(harness: AppHarness) -> None:
    _, alice = await user(harness, "alice")
    resp = await harness.client.post(
        "/api/v1/chat/sessions",
        json={"title": "x", "participants": [{"user": "nobody"}]},
        headers=alice,
    )
    assert resp.status_code == 422
    assert resp.json()["code"] == "unknown_participant"
    resp = await harness.client.post(
        "/api/v1/chat/sessions",
        json={"title": "x", "participants": [{"user": "a", "agent": "b"}]},
        headers=alice,
    )
    assert resp.status_code == 422


async def test_add_and_remove_participants(harness: AppHarness) -> None:
    client = harness.client
    _, alice = await user(harness, "alice")
    bob_id, bob = await user(harness, "bob")
    sid = (await new_session(client, alice))["id"]
    resp = await client.post(
        f"/api/v1/chat/sessions/{sid}/messages", json={"content": "hi"}, headers=bob
    )
    assert resp.status_code == 404
    resp = await client.post(
        f"/api/v1/chat/sessions/{sid}/participants", json={"user": bob_id}, headers=alice
    )
    assert resp.status_code == 200
    assert f"user:{bob_id}" in {p["participant_id"] for p in resp.json()["participants"]}
    await post(client, bob, sid, "now I can")
    # Bob may leave; then he cannot post any more.
    resp = await client.delete(
        f"/api/v1/chat/sessions/{sid}/participants/user:{bob_id}", headers=bob
    )
    assert resp.status_code == 204
    resp = await client.post(
        f"/api/v1/chat/sessions/{sid}/messages", json={"content": "x"}, headers=bob
    )
    assert resp.status_code == 404
    resp = await client.delete(
        f"/api/v1/chat/sessions/{sid}/participants/user:{bob_id}", headers=alice
    )
    assert resp.status_code == 404
    assert resp.json()["code"] == "participant_not_found"


async def test_seq_is_gap_free_under_concurrent_posts(harness: AppHarness) -> None:
    client = harness.client
    _, alice = await user(harness, "alice")
    sid = (await new_session(client, alice))["id"]
    results = await asyncio.gather(*(post(client, alice, sid, f"m{i}") for i in range(40)))
    assert sorted(m["seq"] for m in results) == list(range(1, 41))
    session = (await client.get(f"/api/v1/chat/sessions/{sid}", headers=alice)).json()
    assert session["last_seq"] == 40
    # A refused post takes no number.
    resp = await client.post(
        f"/api/v1/chat/sessions/{sid}/messages",
        json={"content": "with a bad file", "file_ids": ["nope"]},
        headers=alice,
    )
    assert resp.status_code == 422
    assert resp.json()["code"] == "unknown_file"
    assert (await post(client, alice, sid, "next"))["seq"] == 41


async def test_history_pages_by_seq_both_ways(harness: AppHarness) -> None:
    client = harness.client
    _, alice = await user(harness, "alice")
    sid = (await new_session(client, alice))["id"]
    for i in range(1, 12):
        await post(client, alice, sid, f"m{i}")
    url = f"/api/v1/chat/sessions/{sid}/messages"
    # Backwards from the latest, pages in seq order.
    seen: list[int] = []
    params: dict[str, object] = {"limit": 4}
    pages = 0
    while True:
        page = (await client.get(url, params=params, headers=alice)).json()
        seqs = [m["seq"] for m in page["items"]]
        assert seqs == sorted(seqs)
        seen = seqs + seen
        pages += 1
        if not page["next_cursor"]:
            break
        params = {"limit": 4, "cursor": page["next_cursor"]}
    assert seen == list(range(1, 12))
    assert pages == 3
    # Forwards after a seq.
    forward: list[int] = []
    params = {"after_seq": 5, "limit": 4}
    while True:
        page = (await client.get(url, params=params, headers=alice)).json()
        forward += [m["seq"] for m in page["items"]]
        if not page["next_cursor"]:
            break
        params = {"limit": 4, "cursor": page["next_cursor"]}
    assert forward == list(range(6, 12))
    before = (await client.get(url, params={"before_seq": 3}, headers=alice)).json()
    assert [m["content"] for m in before["items"]] == ["m1", "m2"]

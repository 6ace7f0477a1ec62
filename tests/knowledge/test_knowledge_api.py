"""The knowledge API on both databases: add, get, list, delete, ranked search,
filters, pagination, similar, permissions and bad input."""

from __future__ import annotations

from typing import Any

from tests.conftest import AppHarness
from ymera.auth.permissions import Role

DOCS = [
    {
        "task_type": "db_migration",
        "summary": "PostgreSQL migration failed: lock timeout while the migration "
        "altered the tasks table; the migration was retried",
        "outcome": "FAILED",
        "notes": "set lock_timeout and retry the migration off peak",
    },
    {
        "task_type": "db_migration",
        "summary": "Added an index concurrently; a long report query held a lock; "
        "the whole change including docs, tests, review and a migration took a day",
        "outcome": "SUCCEEDED",
        "notes": "nothing special",
    },
    {
        "task_type": "write_docs",
        "summary": "Wrote the getting started guide for the command line interface",
        "outcome": "SUCCEEDED",
        "notes": "screenshots help readers",
    },
]


async def _add(h: AppHarness, role: Role, body: dict[str, Any]) -> dict[str, Any]:
    resp = await h.client.post("/api/v1/knowledge", json=body, headers=await h.headers(role))
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _search(h: AppHarness, **params: Any) -> dict[str, Any]:
    resp = await h.client.get(
        "/api/v1/knowledge", params=params, headers=await h.headers(Role.VIEWER)
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_add_get_list_delete_and_permissions(harness: AppHarness) -> None:
    h = harness
    viewer = await h.headers(Role.VIEWER)
    added = await _add(h, Role.DEVELOPER, DOCS[0])
    assert added["source"] == "user"
    assert added["outcome"] == "FAILED"
    assert added["created_by"].startswith("user:")
    assert added["score"] is None
    got = await h.client.get(f"/api/v1/knowledge/{added['id']}", headers=viewer)
    assert got.status_code == 200
    assert got.json()["summary"] == DOCS[0]["summary"]
    assert (await h.client.get("/api/v1/knowledge/nope", headers=viewer)).status_code == 404
    # A viewer reads but does not write; nobody anonymous does either.
    assert (
        await h.client.post("/api/v1/knowledge", json=DOCS[1], headers=viewer)
    ).status_code == 403
    assert (await h.client.get("/api/v1/knowledge")).status_code == 401
    # Another developer may not delete it; an operator may; then it is gone.
    await h.create_user("dev2", Role.DEVELOPER)
    token = (await h.login("dev2"))["access_token"]
    other = {"Authorization": f"Bearer {token}"}
    denied = await h.client.delete(f"/api/v1/knowledge/{added['id']}", headers=other)
    assert denied.status_code == 403
    assert denied.json()["code"] == "not_owner"
    mine = await _add(h, Role.DEVELOPER, DOCS[1])
    dev = await h.headers(Role.DEVELOPER)
    assert (
        await h.client.delete(f"/api/v1/knowledge/{mine['id']}", headers=dev)
    ).status_code == 204
    operator = await h.headers(Role.OPERATOR)
    assert (
        await h.client.delete(f"/api/v1/knowledge/{added['id']}", headers=operator)
    ).status_code == 204
    assert (
        await h.client.get(f"/api/v1/knowledge/{added['id']}", headers=viewer)
    ).status_code == 404
    assert (await h.client.delete("/api/v1/knowledge/nope", headers=operator)).status_code == 404
    assert (await _search(h))["items"] == []


async def test_bad_input_is_422(harness: AppHarness) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    bad = [
        {"summary": "no type"},
        {"task_type": "", "summary": "x"},
        {"task_type": "t", "summary": ""},
        {"task_type": "t", "summary": "x", "outcome": "MAYBE"},
        {"task_type": "t", "summary": "x", "extra": 1},
        {"task_type": "t", "summary": 5},
    ]
    for body in bad:
        resp = await harness.client.post("/api/v1/knowledge", json=body, headers=dev)
        assert resp.status_code == 422, (body, resp.text)
    for params in ({"q": ""}, {"limit": 0}, {"limit": 101}, {"outcome": "MAYBE"}):
        resp = await harness.client.get("/api/v1/knowledge", params=params, headers=dev)
        assert resp.status_code == 422, (params, resp.text)
    bad_cursor = await harness.client.get("/api/v1/knowledge?cursor=%%%", headers=dev)
    assert bad_cursor.status_code == 400
    for params in ({}, {"text": "x", "task_id": "y"}):
        resp = await harness.client.get("/api/v1/knowledge/similar", params=params, headers=dev)
        assert resp.status_code == 422, (params, resp.text)
        assert resp.json()["code"] == "task_or_text"


async def test_ranked_search_filters_and_pagination(harness: AppHarness) -> None:
    h = harness
    ids = [(await _add(h, Role.DEVELOPER, d))["id"] for d in DOCS]
    found = await _search(h, q="migration lock")
    # Both migration experiences match both words; the one about little else ranks first.
    assert [e["id"] for e in found["items"]] == [ids[0], ids[1]]
    scores = [e["score"] for e in found["items"]]
    assert 1 > scores[0] > scores[1] > 0
    # Stemming: "migrations"/"locks" match too; every word must match.
    assert [e["id"] for e in (await _search(h, q="Migrations LOCKS"))["items"]] == ids[:2]
    assert (await _search(h, q="migration screenshots"))["items"] == []
    # Web-search syntax: an excluded word, a phrase, `or`.
    assert [e["id"] for e in (await _search(h, q="migration -timeout"))["items"]] == [ids[1]]
    assert [e["id"] for e in (await _search(h, q='"getting started"'))["items"]] == [ids[2]]
    either = await _search(h, q="screenshots or timeout")
    assert sorted(e["id"] for e in either["items"]) == sorted([ids[0], ids[2]])
    assert (await _search(h, q="!!! ???"))["items"] == []
    # Filters: type, outcome, agent.
    assert [e["id"] for e in (await _search(h, q="migration", outcome="SUCCEEDED"))["items"]] == [
        ids[1]
    ]
    assert (await _search(h, q="migration", type="write_docs"))["items"] == []
    listed = await _search(h, type="db_migration")
    assert [e["id"] for e in listed["items"]] == [ids[1], ids[0]]  # newest first
    assert (await _search(h, agent_id="someone"))["items"] == []
    # Pagination, ranked and listed.
    first = await _search(h, q="migration", limit=1)
    assert [e["id"] for e in first["items"]] == [ids[0]]
    second = await _search(h, q="migration", limit=1, cursor=first["next_cursor"])
    assert [e["id"] for e in second["items"]] == [ids[1]]
    assert second["next_cursor"] is None
    page1 = await _search(h, limit=2)
    page2 = await _search(h, limit=2, cursor=page1["next_cursor"])
    assert [e["id"] for e in page1["items"] + page2["items"]] == ids[::-1]
    assert page2["next_cursor"] is None


async def test_similar_by_text_and_by_task(harness: AppHarness) -> None:
    h = harness
    ids = [(await _add(h, Role.DEVELOPER, d))["id"] for d in DOCS]
    viewer = await h.headers(Role.VIEWER)
    resp = await h.client.get(
        "/api/v1/knowledge/similar",
        params={"text": "the migration hit a lock timeout on the tasks table"},
        headers=viewer,
    )
    assert resp.status_code == 200, resp.text
    hits = resp.json()
    assert [e["id"] for e in hits][:2] == [ids[0], ids[1]]  # any word counts, ranked
    assert hits[0]["score"] > hits[1]["score"]
    dev = await h.headers(Role.DEVELOPER)
    task = await h.client.post(
        "/api/v1/tasks",
        json={"type": "db_migration", "input": {"goal": "run the migration without a lock"}},
        headers=dev,
    )
    assert task.status_code == 201, task.text
    similar = await h.client.get(
        "/api/v1/knowledge/similar", params={"task_id": task.json()["id"]}, headers=dev
    )
    assert similar.status_code == 200, similar.text
    assert [e["id"] for e in similar.json()] == [ids[0], ids[1]]  # its type only
    typed = await h.client.get(
        "/api/v1/knowledge/similar",
        params={"text": "command line guide", "type": "write_docs"},
        headers=viewer,
    )
    assert [e["id"] for e in typed.json()] == [ids[2]]
    # A task the caller may not see is not found.
    other = await h.client.get(
        "/api/v1/knowledge/similar", params={"task_id": task.json()["id"]}, headers=viewer
    )
    assert other.status_code == 404
    status = (await h.client.get("/api/v1/knowledge/status", headers=viewer)).json()
    assert status["ranking"] == "text"
    assert status["entries"] == 3
    assert status["record_tasks"] is True
    assert status["semantic"]["enabled"] is False
    assert status["semantic"]["reason"] == "disabled by knowledge.semantic"
    assert status["text_search"] == ("sqlite-fts5" if h.state.db.is_sqlite else "postgresql-fts")

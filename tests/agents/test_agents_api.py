"""The agents registry over HTTP, on every backend."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import AppHarness
from ymera.agents import service as agents_service
from ymera.auth.permissions import Role

API = "/api/v1/agents"


def agent_body(name: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "type": "DEVELOPER",
        "capabilities": [{"name": "python", "proficiency": 0.8}],
        "max_concurrency": 2,
    }
    body.update(kw)
    return body


async def create(h: AppHarness, name: str, role: Role = Role.ADMIN, **kw: Any) -> dict[str, Any]:
    resp = await h.client.post(API, json=agent_body(name, **kw), headers=await h.headers(role))
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def agent_key(h: AppHarness, agent_id: str) -> dict[str, str]:
    resp = await h.client.post(
        "/api/v1/api-keys",
        json={"name": "worker", "agent_id": agent_id},
        headers=await h.headers(Role.ADMIN),
    )
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['key']}"}


async def events_of(h: AppHarness, type_: str, count: int = 1) -> list[dict[str, Any]]:
    # The relay sequences events asynchronously: poll until they are visible.
    import asyncio

    for _ in range(100):
        resp = await h.client.get(
            "/api/v1/events", params={"type": type_}, headers=await h.headers(Role.ADMIN)
        )
        items = resp.json()["items"]
        if len(items) >= count:
            return list(items)
        await asyncio.sleep(0.05)
    return []


async def test_create_get_and_event(harness: AppHarness) -> None:
    agent = await create(harness, "coder-1", tags=["b", "a", "a"], metadata={"model": "x"})
    assert agent["status"] == "OFFLINE"
    assert agent["tags"] == ["a", "b"]
    assert agent["metadata"] == {"model": "x"}
    assert agent["connection_mode"] == "worker"
    got = await harness.client.get(
        f"{API}/{agent['id']}", headers=await harness.headers(Role.VIEWER)
    )
    assert got.status_code == 200
    assert got.json()["name"] == "coder-1"
    created = await events_of(harness, "agent.created")
    assert [e["resource_id"] for e in created] == [agent["id"]]


async def test_duplicate_name_and_validation(harness: AppHarness) -> None:
    await create(harness, "dup")
    resp = await harness.client.post(API, json=agent_body("dup"), headers=await harness.headers())
    assert resp.status_code == 409
    assert resp.json()["code"] == "agent_name_taken"
    bad = await harness.client.post(
        API, json=agent_body("web", connection_mode="http"), headers=await harness.headers()
    )
    assert bad.status_code == 422
    assert "endpoint_url" in bad.json()["detail"]
    twice = await harness.client.post(
        API,
        json=agent_body(
            "x", capabilities=[{"name": "a", "proficiency": 0.1}, {"name": "a", "proficiency": 0.9}]
        ),
        headers=await harness.headers(),
    )
    assert twice.status_code == 201
    assert twice.json()["capabilities"] == [{"name": "a", "proficiency": 0.9}]
    missing = await harness.client.get(f"{API}/nope", headers=await harness.headers())
    assert missing.status_code == 404
    assert missing.json()["code"] == "agent_not_found"


async def test_list_filters(harness: AppHarness) -> None:
    await create(harness, "py-expert", capabilities=[{"name": "python", "proficiency": 0.9}])
    await create(
        harness,
        "py-novice",
        type="TESTER",
        capabilities=[{"name": "python", "proficiency": 0.2}],
        tags=["gpu"],
    )
    await create(harness, "go-dev", capabilities=[{"name": "go", "proficiency": 0.7}])
    h = await harness.headers(Role.VIEWER)

    async def names(**params: Any) -> list[str]:
        resp = await harness.client.get(API, params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return [a["name"] for a in resp.json()["items"]]

    assert await names(capability="python") == ["py-expert", "py-novice"]
    assert await names(capability="python", min_proficiency=0.5) == ["py-expert"]
    assert await names(type="TESTER") == ["py-novice"]
    assert await names(type=["TESTER", "DEVELOPER"]) == ["go-dev", "py-expert", "py-novice"]
    assert await names(tag="gpu") == ["py-novice"]
    assert await names(status="OFFLINE", sort="-name") == ["py-novice", "py-expert", "go-dev"]
    assert await names(status="IDLE") == []


async def test_cursor_pagination_covers_everything_once(harness: AppHarness) -> None:
    for i in range(7):
        await create(harness, f"agent-{i:02d}")
    h = await harness.headers(Role.VIEWER)
    for sort in ("name", "-name", "created_at", "-created_at"):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, "sort": sort}
            if cursor:
                params["cursor"] = cursor
            page = (await harness.client.get(API, params=params, headers=h)).json()
            seen += [a["name"] for a in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        expected = sorted(f"agent-{i:02d}" for i in range(7))
        if sort.startswith("-"):
            expected.reverse()
        assert seen == expected, sort
    bad = await harness.client.get(API, params={"cursor": "!!"}, headers=h)
    assert bad.status_code == 400


async def test_owner_checks(harness: AppHarness) -> None:
    mine = await create(harness, "devs-agent", role=Role.DEVELOPER)
    await harness.create_user("other-dev", Role.DEVELOPER)
    other = {"Authorization": f"Bearer {(await harness.login('other-dev'))['access_token']}"}
    resp = await harness.client.patch(
        f"{API}/{mine['id']}", json={"description": "hijack"}, headers=other
    )
    assert resp.status_code == 403
    assert resp.json()["code"] == "not_owner"
    own = await harness.client.patch(
        f"{API}/{mine['id']}",
        json={"description": "mine", "tags": ["x"]},
        headers=await harness.headers(Role.DEVELOPER),
    )
    assert own.status_code == 200
    assert own.json()["description"] == "mine"
    ops = await harness.client.patch(
        f"{API}/{mine['id']}",
        json={"capabilities": [{"name": "rust", "proficiency": 1}]},
        headers=await harness.headers(Role.OPERATOR),
    )
    assert ops.status_code == 200
    listed = await harness.client.get(
        API, params={"capability": "rust"}, headers=await harness.headers()
    )
    assert [a["name"] for a in listed.json()["items"]] == ["devs-agent"]


async def test_heartbeat_load_and_pause_resume(harness: AppHarness) -> None:
    agent = await create(harness, "hb", max_concurrency=2)
    key = await agent_key(harness, agent["id"])
    beat = await harness.client.post(f"{API}/{agent['id']}/heartbeat", headers=key)
    assert beat.status_code == 200, beat.text
    assert beat.json()["status"] == "IDLE"
    busy = await harness.client.post(
        f"{API}/{agent['id']}/heartbeat", json={"load": 2}, headers=key
    )
    assert busy.json()["status"] == "BUSY"
    active = await harness.client.post(
        f"{API}/{agent['id']}/heartbeat", json={"load": 1}, headers=key
    )
    assert active.json()["status"] == "ACTIVE"

    ops = await harness.headers(Role.OPERATOR)
    paused = await harness.client.post(f"{API}/{agent['id']}/pause", headers=ops)
    assert paused.json()["status"] == "PAUSED"
    still = await harness.client.post(
        f"{API}/{agent['id']}/heartbeat", json={"load": 0}, headers=key
    )
    assert still.json()["status"] == "PAUSED"
    resumed = await harness.client.post(f"{API}/{agent['id']}/resume", headers=ops)
    assert resumed.json()["status"] == "IDLE"
    again = await harness.client.post(f"{API}/{agent['id']}/resume", headers=ops)
    assert again.status_code == 409

    changes = await events_of(harness, "agent.status_changed", count=5)
    assert [(e["data"]["from"], e["data"]["to"]) for e in changes] == [
        ("OFFLINE", "IDLE"),
        ("IDLE", "BUSY"),
        ("BUSY", "ACTIVE"),
        ("ACTIVE", "PAUSED"),
        ("PAUSED", "IDLE"),
    ]


async def test_agent_key_is_bound_to_its_agent(harness: AppHarness) -> None:
    a = await create(harness, "a1")
    b = await create(harness, "b1")
    key_a = await agent_key(harness, a["id"])
    resp = await harness.client.post(f"{API}/{b['id']}/heartbeat", headers=key_a)
    assert resp.status_code == 403
    assert resp.json()["code"] == "not_your_agent"
    cannot_create = await harness.client.post(API, json=agent_body("z"), headers=key_a)
    assert cannot_create.status_code == 403


async def test_manual_status_and_illegal_transitions(harness: AppHarness) -> None:
    agent = await create(harness, "st")
    ops = await harness.headers(Role.OPERATOR)
    url = f"{API}/{agent['id']}/status"
    busy = await harness.client.post(url, json={"status": "BUSY"}, headers=ops)
    assert busy.status_code == 409
    assert busy.json()["code"] == "illegal_status_transition"
    assert busy.json()["allowed"] == ["DEGRADED", "ERROR", "OFFLINE"]
    err = await harness.client.post(url, json={"status": "ERROR", "reason": "bad"}, headers=ops)
    assert err.json()["status"] == "ERROR"
    assert err.json()["status_reason"] == "bad"
    await harness.client.post(f"{API}/{agent['id']}/pause", headers=ops)
    illegal = await harness.client.post(url, json={"status": "ERROR"}, headers=ops)
    assert illegal.status_code == 409
    assert set(illegal.json()["allowed"]) == {"IDLE", "ACTIVE", "BUSY", "OFFLINE"}
    dev = await harness.client.post(
        url, json={"status": "ERROR"}, headers=await harness.headers(Role.DEVELOPER)
    )
    assert dev.status_code == 403


async def test_delete_refuses_with_running_tasks_unless_forced(harness: AppHarness) -> None:
    agent = await create(harness, "del", max_concurrency=3)
    key = await agent_key(harness, agent["id"])
    await harness.client.post(f"{API}/{agent['id']}/heartbeat", json={"load": 1}, headers=key)
    h = await harness.headers()
    refused = await harness.client.delete(f"{API}/{agent['id']}", headers=h)
    assert refused.status_code == 409
    assert refused.json()["running"] == 1
    forced = await harness.client.delete(
        f"{API}/{agent['id']}", params={"force": "true"}, headers=h
    )
    assert forced.status_code == 204
    gone = await harness.client.get(f"{API}/{agent['id']}", headers=h)
    assert gone.status_code == 404
    revoked = await harness.client.post(f"{API}/{agent['id']}/heartbeat", headers=key)
    assert revoked.status_code == 401
    assert revoked.json()["code"] == "api_key_revoked"


async def test_silent_agents_go_offline(harness: AppHarness) -> None:
    agent = await create(harness, "silent")
    quiet = await create(harness, "paused-one")
    for a in (agent, quiet):
        await harness.client.post(
            f"{API}/{a['id']}/heartbeat", headers=await agent_key(harness, a["id"])
        )
    await harness.client.post(f"{API}/{quiet['id']}/pause", headers=await harness.headers())
    later = harness.state.clock.now()
    from datetime import timedelta

    async with harness.state.db.transaction() as session:
        gone = await agents_service.mark_silent_offline(
            session, now=later + timedelta(seconds=31), heartbeat_timeout=30
        )
    assert [a.id for a in gone] == [agent["id"]]
    got = await harness.client.get(f"{API}/{agent['id']}", headers=await harness.headers())
    assert got.json()["status"] == "OFFLINE"
    assert "no heartbeat" in got.json()["status_reason"]
    paused = await harness.client.get(f"{API}/{quiet['id']}", headers=await harness.headers())
    assert paused.json()["status"] == "PAUSED"


async def test_unauthenticated_is_401(client: httpx.AsyncClient) -> None:
    resp = await client.get(API)
    assert resp.status_code == 401

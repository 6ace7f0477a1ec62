"""`preferred_only`: a task only its preferred agents may take. Submissions are
checked before anything is written (422 with a code); the pin is stored, read
back, and honoured by the dispatcher (tests/chat/test_agents_chat.py runs it
end to end with real workers)."""

from __future__ import annotations

from tests.conftest import AppHarness
from ymera.auth.permissions import Role


async def _agent(harness: AppHarness, name: str) -> str:
    admin = await harness.headers(Role.ADMIN)
    body = {"name": name, "type": "CUSTOM", "max_concurrency": 1}
    resp = await harness.client.post("/api/v1/agents", json=body, headers=admin)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def test_a_pin_needs_a_registered_preferred_agent(harness: AppHarness) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    agent_id = await _agent(harness, "pinned")
    bad = await harness.client.post(
        "/api/v1/tasks", json={"type": "t", "preferred_only": True}, headers=dev
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_routing_hints"
    unknown = await harness.client.post(
        "/api/v1/tasks",
        json={"type": "t", "preferred_agents": ["ghost"], "preferred_only": True},
        headers=dev,
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_agent"
    assert "ghost" in unknown.json()["detail"]
    # One bad task refuses the whole batch; nothing of it is written.
    batch = await harness.client.post(
        "/api/v1/tasks/batch",
        json={
            "tasks": [
                {"type": "b", "preferred_agents": ["pinned"], "preferred_only": True},
                {"type": "b", "preferred_agents": ["ghost"], "preferred_only": True},
            ]
        },
        headers=dev,
    )
    assert batch.status_code == 422
    assert batch.json()["code"] == "unknown_agent"
    listed = await harness.client.get("/api/v1/tasks", params={"type": "b"}, headers=dev)
    assert listed.json()["items"] == []
    # By name or by id, with unknown names alongside a known one: accepted.
    for key in ("pinned", agent_id):
        ok = await harness.client.post(
            "/api/v1/tasks",
            json={"type": "t", "preferred_agents": ["ghost", key], "preferred_only": True},
            headers=dev,
        )
        assert ok.status_code == 201, ok.text
        task = (await harness.client.get(f"/api/v1/tasks/{ok.json()['id']}", headers=dev)).json()
        assert task["preferred_only"] is True
        assert task["preferred_agents"] == ["ghost", key]
    plain = await harness.client.post("/api/v1/tasks", json={"type": "t"}, headers=dev)
    assert plain.json()["preferred_only"] is False

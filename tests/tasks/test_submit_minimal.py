"""`Prefer: return=minimal` (RFC 7240) on submissions: ids and statuses only."""

from __future__ import annotations

import pytest

from tests.conftest import AppHarness
from ymera.auth.permissions import Role


@pytest.mark.parametrize("prefer", ["return=minimal", "respond-async, Return=Minimal; x=1"])
async def test_minimal_answers_carry_ids_and_statuses(harness: AppHarness, prefer: str) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    one = await harness.client.post(
        "/api/v1/tasks", json={"type": "t"}, headers={**dev, "Prefer": prefer}
    )
    assert one.status_code == 201, one.text
    assert one.headers["Preference-Applied"] == "return=minimal"
    assert set(one.json()) == {"id", "status"}
    assert one.json()["status"] == "PENDING"

    batch = await harness.client.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{"type": "t"}, {"type": "u", "priority": 9}]},
        headers={**dev, "Prefer": prefer},
    )
    assert batch.status_code == 201, batch.text
    refs = batch.json()
    assert [set(r) for r in refs] == [{"id", "status"}] * 2
    # The ids are the tasks', in order.
    for ref, kind in zip(refs, ("t", "u"), strict=True):
        full = await harness.client.get(f"/api/v1/tasks/{ref['id']}", headers=dev)
        assert full.json()["type"] == kind


async def test_without_the_preference_the_whole_task_is_answered(harness: AppHarness) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    resp = await harness.client.post(
        "/api/v1/tasks", json={"type": "t"}, headers={**dev, "Prefer": "return=representation"}
    )
    assert resp.status_code == 201
    assert "Preference-Applied" not in resp.headers
    assert resp.json()["type"] == "t"
    assert "created_at" in resp.json()

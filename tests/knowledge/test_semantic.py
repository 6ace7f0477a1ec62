"""Hybrid ranking with the semantic extra (skipped only when it is not installed):
an experience found by meaning that shares no word with the query, embeddings of
recorded tasks filled in by the background pass, and the status."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from tests.conftest import AppHarness
from tests.fixtures.backends import Backend
from tests.fixtures.waiting import wait_until
from ymera.auth.permissions import Role
from ymera.config import Settings
from ymera.knowledge.semantic import missing_packages
from ymera.models.knowledge import Experience

pytestmark = pytest.mark.skipif(
    bool(missing_packages()), reason=f"semantic extra not installed: {missing_packages()}"
)


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings(knowledge={"semantic": True, "embed_interval": 0.1})


async def test_hybrid_ranking_finds_by_meaning(harness: AppHarness) -> None:
    h = harness
    dev = await h.headers(Role.DEVELOPER)
    docs = [
        ("cooking", "Baked a chocolate cake for the office party"),
        ("ops", "The server ran out of disk space and the database crashed"),
        ("ops", "Renewed the TLS certificate of the load balancer"),
    ]
    ids = []
    for task_type, summary in docs:
        resp = await h.client.post(
            "/api/v1/knowledge", json={"task_type": task_type, "summary": summary}, headers=dev
        )
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    status = (await h.client.get("/api/v1/knowledge/status", headers=dev)).json()
    assert status["ranking"] == "hybrid", status
    assert status["semantic"]["model"] == "all-MiniLM-L6-v2"
    assert status["embedded"] == 3
    # No word in common with the crash experience; meaning alone finds it first.
    similar = await h.client.get(
        "/api/v1/knowledge/similar",
        params={"text": "storage volume full, DB went down"},
        headers=dev,
    )
    assert similar.status_code == 200, similar.text
    hits = similar.json()
    assert hits[0]["id"] == ids[1], hits
    assert hits[0]["score"] > hits[-1]["score"]
    # Text matches still count: the word "certificate" puts that one first.
    found = (
        await h.client.get("/api/v1/knowledge", params={"q": "certificate"}, headers=dev)
    ).json()["items"]
    assert found[0]["id"] == ids[2]

    # Experiences without a vector (as recorded from tasks) get one from the
    # background pass: all three were cleared, so 3 again means it ran.
    async with h.state.db.transaction() as session:
        await session.execute(update(Experience).values(embedding=None))

    async def all_embedded() -> bool:
        got = (await h.client.get("/api/v1/knowledge/status", headers=dev)).json()
        return bool(got["embedded"] == 3)

    await wait_until(all_embedded, timeout=30, what="the embed pass")

"""/healthz and /readyz: liveness, and readiness of the database, schema and bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import AppHarness
from tests.fixtures.backends import Backend
from tests.fixtures.process import free_port
from ymera import __version__
from ymera.app import create_app
from ymera.bus.redis import RedisBus
from ymera.db import migrate

PROBLEM = "application/problem+json"


@pytest.fixture
async def unmigrated_app(
    backend: Backend, empty_database_url: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app started on an empty database (nothing migrated, no admin)."""
    settings = backend.settings(database_url=empty_database_url, auth={"bootstrap_admin": False})
    app = create_app(settings, loops=())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ymera.test") as client:
            yield app, client


async def test_healthz_is_ok(harness: AppHarness) -> None:
    resp = await harness.client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "version": __version__}


async def test_readyz_ok_when_database_schema_and_bus_are_ready(
    harness: AppHarness, backend: Backend
) -> None:
    resp = await harness.client.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready"
    assert body["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "bus": f"{backend.bus_kind}: ok",
    }


async def test_readyz_503_until_the_database_is_migrated(
    unmigrated_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = unmigrated_app
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == 503
    assert body["code"] == "not_ready"
    assert body["checks"]["database"] == "ok"
    assert "ymera db upgrade" in body["checks"]["migrations"]
    assert "migrations" in body["detail"]

    await migrate.upgrade(app.state.ymera.db)

    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text


async def test_readyz_503_when_the_bus_is_down(harness: AppHarness) -> None:
    state = harness.state
    working_bus = state.bus
    dead_bus = RedisBus(f"redis://127.0.0.1:{free_port()}/0", prefix="ymera_dead:")
    state.bus = dead_bus
    try:
        resp = await harness.client.get("/readyz")
    finally:
        state.bus = working_bus
        await dead_bus.close()
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["code"] == "not_ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"
    assert body["checks"]["bus"].startswith("redis: ")
    assert body["checks"]["bus"] != "redis: ok"

    # Back on a working bus, ready again.
    assert (await harness.client.get("/readyz")).status_code == 200

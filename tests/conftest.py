"""Shared fixtures: isolated backends (SQLite / PostgreSQL x memory / Redis), a
running app with an HTTP client, users and tokens."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures import services
from tests.fixtures.backends import (
    BACKENDS,
    Backend,
    copy_sqlite,
    migrated_sqlite_template,
    truncate_postgres,
)
from tests.fixtures.live import LiveServer, live  # noqa: F401  (shared fixture)
from ymera.app import create_app
from ymera.auth import service as auth_service
from ymera.auth.permissions import Role
from ymera.config import Settings
from ymera.db import migrate
from ymera.db.database import Database
from ymera.logging import configure_logging

# The server's own logging set-up: structlog's default renders an exception with
# rich and every frame's locals (13 s for one 500 with an app in its frames).
configure_logging("INFO", json_format=False)

_backend_counts: Counter[str] = Counter()


# --- session-wide resources ------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(migrated_sqlite_template(path))
    return path


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """Wait for the databases tests left to drop (``services.drop_pg_database_later``)."""
    yield
    services.wait_for_drops()


@pytest.fixture(scope="session")
def pg_database(worker_id: str) -> Iterator[str]:
    """One migrated PostgreSQL database per test session (per xdist worker)."""
    services.need("postgres")
    name = services.unique_name(f"ymera_test_{worker_id}")
    asyncio.run(services.create_pg_database(name))
    url = services.pg_url_for(name)

    async def _migrate() -> None:
        db = Database(url)
        try:
            await migrate.upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(_migrate())
    try:
        yield url
    finally:
        asyncio.run(services.drop_pg_database(name))


# --- per-test backend --------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[Backend]:
    """An isolated database + bus for one test, for each backend combination."""
    name: str = request.param
    db_kind, bus_kind = name.split("-")
    if db_kind == "postgresql":
        url = request.getfixturevalue("pg_database")
        asyncio.run(truncate_postgres(url))
    else:
        url = copy_sqlite(sqlite_template, tmp_path)
    redis_url = None
    prefix = services.unique_name("ymera_test") + ":"
    if bus_kind == "redis":
        services.need("redis")
        redis_url = services.REDIS_URL
    _backend_counts[name] += 1
    yield Backend(
        name=name, database_url=url, redis_url=redis_url, redis_prefix=prefix, data_dir=tmp_path
    )
    if redis_url:
        services.flush_redis_prefix(prefix)


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings()


# --- app and client ----------------------------------------------------------------------


class AppHarness:
    """A started app, an HTTP client bound to it, and helpers for users and tokens."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
        self.app = app
        self.client = client
        self.settings = settings
        self._tokens: dict[str, str] = {}

    @property
    def state(self) -> Any:
        return self.app.state.ymera

    async def create_user(
        self, username: str, role: Role, password: str = "password-123456"
    ) -> str:
        async with self.state.db.transaction() as session:
            user = await auth_service.create_user(
                session, username=username, password=password, role=role
            )
            return str(user.id)

    async def login(self, username: str, password: str = "password-123456") -> dict[str, Any]:
        resp = await self.client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def token_for(self, role: Role) -> str:
        """An access token for a (created on first use) user with ``role``."""
        if role.value not in self._tokens:
            username = f"{role.value}-user"
            await self.create_user(username, role)
            self._tokens[role.value] = (await self.login(username))["access_token"]
        return self._tokens[role.value]

    async def headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token_for(role)}"}


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[AppHarness]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ymera.test") as client:
            yield AppHarness(app, client, settings)


@pytest.fixture
async def client(harness: AppHarness) -> httpx.AsyncClient:
    return harness.client


# --- reporting ---------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any) -> None:
    counts = dict(_backend_counts)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    stats = terminalreporter.stats
    per_backend: Counter[str] = Counter()
    for outcome in ("passed", "failed", "error"):
        for report in stats.get(outcome, []):
            if report.when != "call" and outcome == "passed":
                continue
            for name in BACKENDS:
                if f"[{name}" in report.nodeid or f"-{name}]" in report.nodeid:
                    per_backend[f"{name} {outcome}"] += 1
    if per_backend or counts:
        terminalreporter.section("backends")
        for key in sorted(per_backend):
            terminalreporter.write_line(f"{key}: {per_backend[key]}")

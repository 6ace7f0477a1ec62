"""Auth test helpers: an app on a frozen clock, cheap password hashing, and small
request helpers.

Every test in this folder gets ``harness`` (overriding the shared one) built with
a :class:`FrozenClock`, so tests move time (token and key expiry, last use)
instead of sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import AppHarness
from tests.fixtures.passwords import cheapen_argon2
from ymera.app import create_app
from ymera.config import Settings
from ymera.kit.clock import FrozenClock

BASE_URL = "http://ymera.test"
PASSWORD = "password-123456"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Argon2 with minimal cost: these tests are about tokens and keys, not about
    the hash cost, and every user creation and login hashes once."""
    cheapen_argon2(monkeypatch)
    return


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@asynccontextmanager
async def started(
    settings: Settings, *, clock: FrozenClock | None = None, **app_kwargs: Any
) -> AsyncIterator[AppHarness]:
    """A started app with a client, like the shared ``harness`` fixture."""
    app = create_app(settings, clock=clock, **app_kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield AppHarness(app, client, settings)


@pytest.fixture
async def harness(settings: Settings, clock: FrozenClock) -> AsyncIterator[AppHarness]:
    async with started(settings, clock=clock) as h:
        yield h


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(h: AppHarness, username: str, password: str = PASSWORD) -> dict[str, Any]:
    return await h.login(username, password)


async def refresh(h: AppHarness, refresh_token: str) -> httpx.Response:
    return await h.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def me(h: AppHarness, headers: dict[str, str]) -> httpx.Response:
    return await h.client.get("/api/v1/auth/me", headers=headers)


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and code."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["code"] == code, body
    return body

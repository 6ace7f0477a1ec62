"""Rate limits: per principal on every authenticated request, per client address
on login and refresh; 429 problem with Retry-After. On ``postgresql-redis`` the
counters live in Redis (shared by replicas), on ``sqlite-memory`` in memory."""

from __future__ import annotations

import httpx

from tests.auth.conftest import BASE_URL, PASSWORD, assert_problem, bearer, login, me, started
from tests.fixtures.backends import Backend
from ymera.auth.permissions import Role


def assert_rate_limited(resp: httpx.Response) -> None:
    body = assert_problem(resp, 429, "rate_limited")
    retry_after = int(resp.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert body["retry_after"] == retry_after


async def test_each_principal_has_its_own_budget(backend: Backend) -> None:
    settings = backend.settings(rate_limit={"default": "3/minute"})
    async with started(settings) as h:
        await h.create_user("amy", Role.VIEWER)
        await h.create_user("bob", Role.VIEWER)
        amy = bearer((await login(h, "amy"))["access_token"])
        bob = bearer((await login(h, "bob"))["access_token"])

        for _ in range(3):
            assert (await me(h, amy)).status_code == 200
        assert_rate_limited(await me(h, amy))
        assert_rate_limited(await h.client.get("/api/v1/api-keys", headers=amy))
        # Bob is another principal, and public endpoints are not counted.
        assert (await me(h, bob)).status_code == 200
        assert (await h.client.get("/healthz")).status_code == 200


async def test_an_api_key_is_a_principal_of_its_own(backend: Backend) -> None:
    settings = backend.settings(rate_limit={"default": "2/minute"})
    async with started(settings) as h:
        await h.create_user("kim", Role.DEVELOPER)
        kim = bearer((await login(h, "kim"))["access_token"])
        created = await h.client.post("/api/v1/api-keys", json={"name": "k"}, headers=kim)
        assert created.status_code == 201
        key = {"X-API-Key": created.json()["key"]}
        assert (await me(h, kim)).status_code == 200
        assert_rate_limited(await me(h, kim))
        assert (await me(h, key)).status_code == 200
        assert (await me(h, key)).status_code == 200
        assert_rate_limited(await me(h, key))


async def test_login_is_limited_per_client_address(backend: Backend) -> None:
    settings = backend.settings(rate_limit={"login": "3/minute"})
    async with started(settings) as h:
        await h.create_user("lia", Role.VIEWER)
        form = {"username": "lia", "password": "wrong-password"}
        for _ in range(3):
            resp = await h.client.post("/api/v1/auth/token", data=form)
            assert_problem(resp, 401, "invalid_credentials")
        right = {"username": "lia", "password": PASSWORD}
        assert_rate_limited(await h.client.post("/api/v1/auth/token", data=right))
        assert_rate_limited(
            await h.client.post("/api/v1/auth/refresh", json={"refresh_token": "ymr_x"})
        )

        other = httpx.ASGITransport(app=h.app, client=("10.9.8.7", 4242))
        async with httpx.AsyncClient(transport=other, base_url=BASE_URL) as elsewhere:
            resp = await elsewhere.post("/api/v1/auth/token", data=right)
            assert resp.status_code == 200, resp.text


async def test_disabled_limiter_never_refuses(backend: Backend) -> None:
    settings = backend.settings(
        rate_limit={"enabled": False, "default": "1/minute", "login": "1/minute"}
    )
    async with started(settings) as h:
        await h.create_user("ned", Role.VIEWER)
        await login(h, "ned")
        headers = bearer((await login(h, "ned"))["access_token"])
        for _ in range(3):
            assert (await me(h, headers)).status_code == 200

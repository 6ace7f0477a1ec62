"""The principal cache: a resolved credential is reused for a few seconds, and a
change to users or keys drops it at once (here) or on its event (other replicas)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from tests.auth.conftest import assert_problem, bearer, login, me, started
from tests.conftest import AppHarness
from tests.fixtures.waiting import wait_until
from ymera.auth.cache import PrincipalCache, principal_cache_loop
from ymera.auth.permissions import Role
from ymera.config import Settings
from ymera.events.service import EVENTS_CHANNEL
from ymera.kit.clock import FrozenClock
from ymera.models.auth import User
from ymera.models.events import Event


async def _deactivate_behind_the_apps_back(h: AppHarness, user_id: str) -> None:
    """Change the row without the service (so no event is recorded): only the
    cache's lifetime can end a cached principal then."""
    async with h.state.db.transaction() as session:
        await session.execute(update(User).where(User.id == user_id).values(is_active=False))


async def _settled(h: AppHarness) -> None:
    """Wait until the events of earlier changes (user created, logged in) have
    been published and, with a shared bus, have dropped the cache: then a
    principal cached from now on stays until its time is up."""
    state = h.state
    cache: PrincipalCache = state.extras["principal_cache"]

    async def relayed() -> bool:
        async with state.db.transaction(readonly=True) as session:
            pending = await session.scalar(
                select(func.count()).select_from(Event).where(Event.seq.is_(None))
            )
        return pending == 0

    await wait_until(relayed, timeout=10, what="the outbox to be relayed")
    if state.bus.name == "memory" or not cache.enabled:
        return  # no loop listening
    before = cache.clears

    async def dropped() -> bool:
        if cache.clears > before:
            return True
        # Delivered after the relayed events (one channel keeps its order).
        await state.bus.publish(EVENTS_CHANNEL, {"type": "user.sentinel", "seq": 0})
        return False

    await wait_until(dropped, timeout=10, interval=0.05, what="the bus to catch up")


async def test_a_cached_principal_is_reused_until_its_time_is_up(
    harness: AppHarness, clock: FrozenClock
) -> None:
    user_id = await harness.create_user("cora", Role.VIEWER)
    headers = bearer((await login(harness, "cora"))["access_token"])
    await _settled(harness)
    assert (await me(harness, headers)).status_code == 200
    cache: PrincipalCache = harness.state.extras["principal_cache"]
    assert len(cache) == 1

    await _deactivate_behind_the_apps_back(harness, user_id)
    # Within the cache's lifetime the credential is not read again...
    assert (await me(harness, headers)).status_code == 200
    # ...and once it has passed, it is, and the deactivation applies.
    clock.advance(harness.settings.auth.principal_cache_seconds + 1)
    assert_problem(await me(harness, headers), 401, "invalid_token")


async def test_changes_made_through_the_app_apply_at_once(harness: AppHarness) -> None:
    await harness.create_user("dave", Role.DEVELOPER)
    user_headers = bearer((await login(harness, "dave"))["access_token"])
    admin = await harness.headers(Role.ADMIN)
    assert (await me(harness, user_headers)).json()["role"] == "developer"
    user_id = (await me(harness, user_headers)).json()["user_id"]

    resp = await harness.client.patch(
        f"/api/v1/users/{user_id}", json={"is_active": False}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    assert_problem(await me(harness, user_headers), 401, "invalid_token")


async def test_a_key_is_never_served_past_its_expiry(
    harness: AppHarness, clock: FrozenClock
) -> None:
    admin = await harness.headers(Role.ADMIN)
    expires = (clock.now() + timedelta(seconds=2)).isoformat()
    resp = await harness.client.post(
        "/api/v1/api-keys", json={"name": "short", "expires_at": expires}, headers=admin
    )
    assert resp.status_code == 201, resp.text
    key = {"X-API-Key": resp.json()["key"]}
    await _settled(harness)
    assert (await me(harness, key)).status_code == 200
    clock.advance(3)  # within the cache's lifetime, past the key's
    assert_problem(await me(harness, key), 401, "api_key_expired")


async def test_zero_turns_the_cache_off(settings: Settings, clock: FrozenClock) -> None:
    settings.auth.principal_cache_seconds = 0
    async with started(settings, clock=clock) as h:
        user_id = await h.create_user("otto", Role.VIEWER)
        headers = bearer((await login(h, "otto"))["access_token"])
        await _settled(h)
        assert (await me(h, headers)).status_code == 200
        await _deactivate_behind_the_apps_back(h, user_id)
        assert_problem(await me(h, headers), 401, "invalid_token")
        assert len(h.state.extras["principal_cache"]) == 0


async def test_another_replicas_change_drops_the_cache_through_the_bus(
    harness: AppHarness,
) -> None:
    """The loop each replica runs (with a shared bus): a user or key event from
    anywhere empties the cache; other events leave it alone."""
    import asyncio

    state = harness.state
    if state.bus.name == "memory":
        state.bus.name = "shared-for-this-test"  # the loop only runs with a shared bus
    cache: PrincipalCache = state.extras["principal_cache"]
    stop = asyncio.Event()
    loop = asyncio.create_task(principal_cache_loop(state, stop))
    try:
        await harness.create_user("rhea", Role.VIEWER)
        headers = bearer((await login(harness, "rhea"))["access_token"])

        async def cached() -> bool:
            # The relay may still be publishing the user's creation, which
            # drops the cache when it lands; fill it again until it holds.
            assert (await me(harness, headers)).status_code == 200
            return len(cache) == 1

        await wait_until(cached, timeout=10, interval=0.05, what="the principal to be cached")

        async def dropped() -> bool:
            if len(cache) == 0:
                return True
            # Published until the subscription is live and the event lands.
            await state.bus.publish(EVENTS_CHANNEL, {"type": "user.updated", "seq": 0})
            return False

        await wait_until(dropped, timeout=10, interval=0.05, what="the cache to be dropped")
        assert (await me(harness, headers)).status_code == 200
        await state.bus.publish(EVENTS_CHANNEL, {"type": "task.pending", "seq": 0})
        await state.bus.publish(EVENTS_CHANNEL, {"type": "api_key.revoked", "seq": 0})
        await wait_until(lambda: len(cache) == 0, timeout=10, what="api_key event to drop it")
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)


async def test_requests_that_miss_together_share_one_resolution(
    harness: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When an entry is missing (expired), the requests that arrive while it is
    being resolved wait for that resolution instead of each reading the
    database; a failed resolution is not shared (each tries for itself)."""
    import asyncio

    from ymera.auth import dependencies, service

    await harness.create_user("nina", Role.VIEWER)
    token = (await login(harness, "nina"))["access_token"]
    await _settled(harness)
    cache: PrincipalCache = harness.state.extras["principal_cache"]
    cache.clear()
    real = service.authenticate_access_token
    calls: list[int] = []
    fail = False

    async def slow(*args: object, **kwargs: object) -> object:
        calls.append(1)
        await asyncio.sleep(0.05)  # the others arrive meanwhile
        if fail:
            raise RuntimeError("database gone")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "authenticate_access_token", slow)
    principals = await asyncio.gather(
        *(dependencies.authenticate(harness.state, token) for _ in range(10))
    )
    assert len(calls) == 1
    assert {p.username for p in principals} == {"nina"}

    cache.clear()
    calls.clear()
    fail = True
    results = await asyncio.gather(
        *(dependencies.authenticate(harness.state, token) for _ in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(calls) == 3  # the first failed: the others each tried

"""Access and refresh tokens: rotation, reuse detection, logout, expiry, and what
happens to tokens when the user changes."""

from __future__ import annotations

from datetime import timedelta

import jwt

from tests.auth.conftest import PASSWORD, assert_problem, bearer, login, me, refresh
from tests.conftest import AppHarness
from ymera.auth.permissions import Role
from ymera.kit.clock import FrozenClock


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(harness: AppHarness) -> None:
    await harness.create_user("rita", Role.DEVELOPER)
    first = await login(harness, "rita")
    other_login = await login(harness, "rita")

    resp = await refresh(harness, first["refresh_token"])
    assert resp.status_code == 200, resp.text
    second = resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await me(harness, bearer(second["access_token"]))).json()["username"] == "rita"

    # The rotated-away token comes back: someone holds a copy. Refused, and...
    reuse = await refresh(harness, first["refresh_token"])
    assert_problem(reuse, 401, "refresh_token_reused")
    # ...every token of that login is revoked, including the newest one.
    assert_problem(await refresh(harness, second["refresh_token"]), 401, "invalid_refresh_token")
    # Another login of the same user is another family and keeps working.
    assert (await refresh(harness, other_login["refresh_token"])).status_code == 200


async def test_token_endpoint_accepts_the_refresh_grant(harness: AppHarness) -> None:
    await harness.create_user("gina", Role.VIEWER)
    pair = await login(harness, "gina")
    resp = await harness.client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["refresh_token"] != pair["refresh_token"]
    again = await harness.client.post(
        "/api/v1/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
    )
    assert_problem(again, 401, "refresh_token_reused")
    unknown = await harness.client.post(
        "/api/v1/auth/token", data={"grant_type": "client_credentials"}
    )
    assert_problem(unknown, 422, "unsupported_grant_type")


async def test_logout_revokes_the_refresh_token_and_is_idempotent(harness: AppHarness) -> None:
    await harness.create_user("lou", Role.VIEWER)
    pair = await login(harness, "lou")
    rotated = (await refresh(harness, pair["refresh_token"])).json()

    out = await harness.client.post(
        "/api/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]}
    )
    assert out.status_code == 204
    assert_problem(await refresh(harness, rotated["refresh_token"]), 401, "invalid_refresh_token")
    again = await harness.client.post(
        "/api/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]}
    )
    assert again.status_code == 204


async def test_access_token_expires_on_the_app_clock(
    harness: AppHarness, clock: FrozenClock
) -> None:
    await harness.create_user("eve", Role.VIEWER)
    pair = await login(harness, "eve")
    ttl = harness.settings.auth.access_token_ttl
    assert pair["expires_in"] == ttl

    clock.advance(ttl - 1)
    assert (await me(harness, bearer(pair["access_token"]))).status_code == 200
    clock.advance(1)
    resp = await me(harness, bearer(pair["access_token"]))
    assert_problem(resp, 401, "token_expired")
    assert resp.headers["www-authenticate"] == "Bearer"
    # The refresh token outlives it and gets a fresh access token.
    fresh = await refresh(harness, pair["refresh_token"])
    assert fresh.status_code == 200
    assert (await me(harness, bearer(fresh.json()["access_token"]))).status_code == 200


async def test_refresh_token_expires_on_the_app_clock(
    harness: AppHarness, clock: FrozenClock
) -> None:
    await harness.create_user("max", Role.VIEWER)
    pair = await login(harness, "max")
    assert pair["refresh_expires_in"] == harness.settings.auth.refresh_token_ttl
    clock.advance(harness.settings.auth.refresh_token_ttl)
    assert_problem(await refresh(harness, pair["refresh_token"]), 401, "invalid_refresh_token")


async def test_forged_and_foreign_tokens_are_refused(
    harness: AppHarness, clock: FrozenClock
) -> None:
    user_id = await harness.create_user("fay", Role.ADMIN)
    pair = await login(harness, "fay")
    now = clock.now()
    claims = {
        "sub": user_id,
        "role": "admin",
        "iss": harness.settings.auth.issuer,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "typ": "access",
    }
    secret = harness.settings.auth.secret_key.get_secret_value()  # type: ignore[union-attr]
    no_exp = {k: v for k, v in claims.items() if k != "exp"}
    forged = {
        "other key": jwt.encode(claims, "another-secret-another-secret-0123456789", "HS256"),
        "no expiry": jwt.encode(no_exp, secret, "HS256"),
        "expiry not a number": jwt.encode({**no_exp, "exp": "tomorrow"}, secret, "HS256"),
        "not an access token": jwt.encode({**claims, "typ": "refresh"}, secret, "HS256"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "wrong issuer": jwt.encode({**claims, "iss": "someone-else"}, secret, "HS256"),
        "refresh token as access token": pair["refresh_token"],
        "garbage": "not-a-token",
    }
    assert (await me(harness, bearer(jwt.encode(claims, secret, "HS256")))).status_code == 200
    for name, token in forged.items():
        resp = await me(harness, bearer(token))
        assert resp.status_code == 401, (name, resp.text)
        assert resp.json()["code"] == "invalid_token", (name, resp.json())


async def test_disabled_user_loses_access_at_once(harness: AppHarness) -> None:
    user_id = await harness.create_user("dan", Role.DEVELOPER)
    pair = await login(harness, "dan")
    admin = await harness.headers(Role.ADMIN)

    resp = await harness.client.patch(
        f"/api/v1/users/{user_id}", json={"is_active": False}, headers=admin
    )
    assert resp.status_code == 200
    assert resp.json()["is_active"] is False
    assert_problem(await me(harness, bearer(pair["access_token"])), 401, "invalid_token")
    assert_problem(await refresh(harness, pair["refresh_token"]), 401, "invalid_refresh_token")
    denied = await harness.client.post(
        "/api/v1/auth/token", data={"username": "dan", "password": PASSWORD}
    )
    assert_problem(denied, 401, "invalid_credentials")


async def test_password_change_revokes_refresh_tokens(harness: AppHarness) -> None:
    user_id = await harness.create_user("pat", Role.VIEWER)
    pair = await login(harness, "pat")
    admin = await harness.headers(Role.ADMIN)

    resp = await harness.client.patch(
        f"/api/v1/users/{user_id}", json={"password": "a-brand-new-password"}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    assert_problem(await refresh(harness, pair["refresh_token"]), 401, "invalid_refresh_token")
    old = await harness.client.post(
        "/api/v1/auth/token", data={"username": "pat", "password": PASSWORD}
    )
    assert_problem(old, 401, "invalid_credentials")
    assert (await login(harness, "pat", "a-brand-new-password"))["access_token"]


async def test_role_change_applies_to_tokens_already_issued(harness: AppHarness) -> None:
    user_id = await harness.create_user("ray", Role.OPERATOR)
    token = (await login(harness, "ray"))["access_token"]
    assert (await harness.client.get("/api/v1/users", headers=bearer(token))).status_code == 200

    admin = await harness.headers(Role.ADMIN)
    resp = await harness.client.patch(
        f"/api/v1/users/{user_id}", json={"role": "viewer"}, headers=admin
    )
    assert resp.status_code == 200
    denied = await harness.client.get("/api/v1/users", headers=bearer(token))
    body = assert_problem(denied, 403, "missing_permission")
    assert body["permission"] == "users:read"
    assert (await me(harness, bearer(token))).json()["role"] == "viewer"

"""API keys: shown once, stored hashed, both header forms, scopes, expiry,
revocation, last use, the owner's role, and agent keys."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from tests.auth.conftest import assert_problem, bearer, login, me
from tests.conftest import AppHarness
from ymera.auth.permissions import AGENT_KEY_PERMISSIONS, ROLE_PERMISSIONS, Role
from ymera.kit.clock import FrozenClock
from ymera.models.auth import ApiKey


async def create_key(
    h: AppHarness, headers: dict[str, str], expect: int = 201, **body: Any
) -> dict[str, Any]:
    resp = await h.client.post("/api/v1/api-keys", json={"name": "k", **body}, headers=headers)
    assert resp.status_code == expect, resp.text
    return dict(resp.json())


async def create_agent(h: AppHarness, headers: dict[str, str], name: str) -> str:
    resp = await h.client.post("/api/v1/agents", json={"name": name}, headers=headers)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def key_headers(secret: str) -> dict[str, str]:
    return {"X-API-Key": secret}


async def test_secret_is_shown_once_and_stored_only_as_a_hash(harness: AppHarness) -> None:
    admin = await harness.headers(Role.ADMIN)
    created = await create_key(harness, admin, name="ci")
    secret = created["key"]
    assert secret.startswith("ymk_")
    assert len(secret) >= 40
    assert created["prefix"] == secret[:12]

    listed = await harness.client.get("/api/v1/api-keys", headers=admin)
    one = await harness.client.get(f"/api/v1/api-keys/{created['id']}", headers=admin)
    assert [k["id"] for k in listed.json()["items"]] == [created["id"]]
    for resp in (listed, one):
        assert resp.status_code == 200
        assert secret not in resp.text
        assert secret[12:] not in resp.text
    assert "key" not in one.json()

    async with harness.state.db.transaction(readonly=True) as session:
        row = (await session.execute(select(ApiKey))).scalar_one()
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
    assert not any(secret[12:] in value for value in stored), stored


async def test_key_works_as_bearer_and_as_x_api_key(harness: AppHarness) -> None:
    admin = await harness.headers(Role.ADMIN)
    created = await create_key(harness, admin)
    for headers in (bearer(created["key"]), key_headers(created["key"])):
        resp = await me(harness, headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["api_key_id"] == created["id"]
        assert resp.json()["kind"] == "user"
    wrong = created["key"][:-4] + "AAAA"
    assert_problem(await me(harness, key_headers(wrong)), 401, "invalid_api_key")
    assert_problem(await me(harness, key_headers("ymk_unknown")), 401, "invalid_api_key")


async def test_scopes_limit_what_a_key_can_do(harness: AppHarness) -> None:
    admin = await harness.headers(Role.ADMIN)
    created = await create_key(harness, admin, scopes=["users:read"])
    assert created["scopes"] == ["users:read"]
    headers = key_headers(created["key"])

    assert (await harness.client.get("/api/v1/users", headers=headers)).status_code == 200
    denied = await harness.client.post(
        "/api/v1/users",
        json={"username": "nobody", "password": "password-123456"},
        headers=headers,
    )
    assert assert_problem(denied, 403, "missing_permission")["permission"] == "users:write"
    assert (await me(harness, headers)).json()["permissions"] == ["users:read"]


async def test_default_scopes_are_the_creators_permissions(harness: AppHarness) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    created = await create_key(harness, dev)
    assert created["scopes"] == sorted(p.value for p in ROLE_PERMISSIONS[Role.DEVELOPER])


async def test_a_key_cannot_carry_permissions_its_creator_lacks(harness: AppHarness) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    resp = await harness.client.post(
        "/api/v1/api-keys",
        json={"name": "grab", "scopes": ["tasks:read", "users:read"]},
        headers=dev,
    )
    body = assert_problem(resp, 403, "scope_exceeds_role")
    assert "users:read" in body["detail"]
    # A scoped key cannot mint a broader key either.
    narrow = await create_key(harness, dev, scopes=["api_keys:write"])
    wider = await harness.client.post(
        "/api/v1/api-keys",
        json={"name": "wider", "scopes": ["api_keys:write", "tasks:write"]},
        headers=key_headers(narrow["key"]),
    )
    assert_problem(wider, 403, "scope_exceeds_role")


async def test_key_expires_on_the_app_clock(harness: AppHarness, clock: FrozenClock) -> None:
    admin = await harness.headers(Role.ADMIN)
    expires = clock.now() + timedelta(seconds=60)
    created = await create_key(harness, admin, expires_at=expires.isoformat())
    assert datetime.fromisoformat(created["expires_at"]) == expires
    headers = key_headers(created["key"])

    clock.advance(59)
    assert (await me(harness, headers)).status_code == 200
    clock.advance(1)
    assert_problem(await me(harness, headers), 401, "api_key_expired")

    past = await harness.client.post(
        "/api/v1/api-keys",
        json={"name": "late", "expires_at": (clock.now() - timedelta(seconds=1)).isoformat()},
        headers=admin,
    )
    assert_problem(past, 422, "invalid_expiry")
    naive = await harness.client.post(
        "/api/v1/api-keys",
        json={"name": "naive", "expires_at": "2999-01-01T00:00:00"},
        headers=admin,
    )
    assert_problem(naive, 422, "validation_error")


async def test_revocation_takes_effect_at_once(harness: AppHarness) -> None:
    admin = await harness.headers(Role.ADMIN)
    created = await create_key(harness, admin)
    headers = key_headers(created["key"])
    assert (await me(harness, headers)).status_code == 200

    resp = await harness.client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin)
    assert resp.status_code == 200
    assert resp.json()["revoked_at"] is not None
    assert_problem(await me(harness, headers), 401, "api_key_revoked")
    again = await harness.client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin)
    assert again.status_code == 200
    assert again.json()["revoked_at"] == resp.json()["revoked_at"]
    listed = await harness.client.get("/api/v1/api-keys", headers=admin)
    assert listed.json()["items"] == []
    with_revoked = await harness.client.get(
        "/api/v1/api-keys", params={"include_revoked": "true"}, headers=admin
    )
    assert [k["id"] for k in with_revoked.json()["items"]] == [created["id"]]


async def test_last_use_is_recorded_at_most_once_a_minute(
    harness: AppHarness, clock: FrozenClock
) -> None:
    admin = await harness.headers(Role.ADMIN)
    created = await create_key(harness, admin)
    assert created["last_used_at"] is None
    url = f"/api/v1/api-keys/{created['id']}"

    async def last_used() -> datetime:
        resp = await harness.client.get(url, headers=admin)
        return datetime.fromisoformat(resp.json()["last_used_at"])

    first_use = clock.now()
    assert (await me(harness, key_headers(created["key"]))).status_code == 200
    assert await last_used() == first_use
    clock.advance(30)
    await me(harness, key_headers(created["key"]))
    assert await last_used() == first_use
    clock.advance(31)
    await me(harness, key_headers(created["key"]))
    assert await last_used() == clock.now()


async def test_key_follows_its_owners_role_and_state(harness: AppHarness) -> None:
    owner_id = await harness.create_user("olga", Role.OPERATOR)
    olga = bearer((await login(harness, "olga"))["access_token"])
    created = await create_key(harness, olga)
    headers = key_headers(created["key"])
    admin = await harness.headers(Role.ADMIN)
    assert (await harness.client.get("/api/v1/users", headers=headers)).status_code == 200

    demote = await harness.client.patch(
        f"/api/v1/users/{owner_id}", json={"role": "viewer"}, headers=admin
    )
    assert demote.status_code == 200
    denied = await harness.client.get("/api/v1/users", headers=headers)
    assert_problem(denied, 403, "missing_permission")
    assert "users:read" not in (await me(harness, headers)).json()["permissions"]

    await harness.client.patch(
        f"/api/v1/users/{owner_id}", json={"role": "operator"}, headers=admin
    )
    assert (await harness.client.get("/api/v1/users", headers=headers)).status_code == 200
    await harness.client.patch(
        f"/api/v1/users/{owner_id}", json={"is_active": False}, headers=admin
    )
    assert_problem(await me(harness, headers), 401, "invalid_api_key")


async def test_keys_are_private_to_their_owner_unless_api_keys_admin(
    harness: AppHarness,
) -> None:
    await harness.create_user("ann", Role.DEVELOPER)
    await harness.create_user("ben", Role.DEVELOPER)
    ann = bearer((await login(harness, "ann"))["access_token"])
    ben = bearer((await login(harness, "ben"))["access_token"])
    admin = await harness.headers(Role.ADMIN)
    anns = await create_key(harness, ann)

    assert (await harness.client.get("/api/v1/api-keys", headers=ben)).json()["items"] == []
    for method in ("GET", "DELETE"):
        resp = await harness.client.request(method, f"/api/v1/api-keys/{anns['id']}", headers=ben)
        assert_problem(resp, 404, "api_key_not_found")
    everyone = await harness.client.get("/api/v1/api-keys", params={"all": "true"}, headers=ben)
    assert assert_problem(everyone, 403, "missing_permission")["permission"] == "api_keys:admin"

    listed = await harness.client.get("/api/v1/api-keys", params={"all": "true"}, headers=admin)
    assert anns["id"] in [k["id"] for k in listed.json()["items"]]
    revoked = await harness.client.delete(f"/api/v1/api-keys/{anns['id']}", headers=admin)
    assert revoked.status_code == 200
    assert_problem(await me(harness, key_headers(anns["key"])), 401, "api_key_revoked")


async def test_agent_key_gets_only_the_agent_scope(harness: AppHarness) -> None:
    dev_id = await harness.create_user("dev", Role.DEVELOPER)
    dev = bearer((await login(harness, "dev"))["access_token"])
    agent_id = await create_agent(harness, dev, "builder")

    created = await create_key(harness, dev, agent_id=agent_id, scopes=["users:read"])
    assert created["kind"] == "agent"
    assert created["agent_id"] == agent_id
    assert created["scopes"] == sorted(p.value for p in AGENT_KEY_PERMISSIONS)
    headers = bearer(created["key"])
    who = (await me(harness, headers)).json()
    assert who["kind"] == "agent"
    assert who["agent_id"] == agent_id
    assert who["permissions"] == sorted(p.value for p in AGENT_KEY_PERMISSIONS)

    # Nothing beyond the agent scope, not even what the owner may do.
    assert_problem(
        await harness.client.get("/api/v1/api-keys", headers=headers), 403, "missing_permission"
    )
    assert_problem(
        await harness.client.post("/api/v1/agents", json={"name": "x"}, headers=headers),
        403,
        "missing_permission",
    )

    # The owner loses agents:write: the agent key loses everything.
    admin = await harness.headers(Role.ADMIN)
    await harness.client.patch(f"/api/v1/users/{dev_id}", json={"role": "viewer"}, headers=admin)
    assert (await me(harness, headers)).json()["permissions"] == []


async def test_agent_key_needs_agents_write_and_the_agent(harness: AppHarness) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    agent_id = await create_agent(harness, dev, "solo")

    viewer = await harness.headers(Role.VIEWER)
    resp = await harness.client.post(
        "/api/v1/api-keys", json={"name": "a", "agent_id": agent_id}, headers=viewer
    )
    assert assert_problem(resp, 403, "missing_permission")["permission"] == "agents:write"

    missing = await harness.client.post(
        "/api/v1/api-keys", json={"name": "a", "agent_id": "no-such-agent"}, headers=dev
    )
    assert_problem(missing, 404, "agent_not_found")

    # Another developer does not own the agent; an operator may act on any agent.
    await harness.create_user("dora", Role.DEVELOPER)
    dora = bearer((await login(harness, "dora"))["access_token"])
    theirs = await harness.client.post(
        "/api/v1/api-keys", json={"name": "a", "agent_id": agent_id}, headers=dora
    )
    assert_problem(theirs, 403, "not_owner")
    operator = await harness.headers(Role.OPERATOR)
    assert (await create_key(harness, operator, agent_id=agent_id))["kind"] == "agent"

    # An agent key cannot create keys (not even for its own agent).
    agent_key = (await create_key(harness, dev, agent_id=agent_id))["key"]
    resp = await harness.client.post(
        "/api/v1/api-keys", json={"name": "b", "agent_id": agent_id}, headers=bearer(agent_key)
    )
    assert_problem(resp, 403, "missing_permission")


async def test_the_credentials_are_read_from_either_header_as_before(harness: AppHarness) -> None:
    """A bearer token of any case of the scheme; an API key in X-API-Key when the
    Authorization header carries another scheme or nothing; 401 otherwise."""
    admin = await harness.headers(Role.ADMIN)
    secret = (await create_key(harness, admin, name="headers"))["key"]
    token = admin["Authorization"].partition(" ")[2]
    ok = [
        {"Authorization": f"bearer {token}"},
        {"Authorization": f"BEARER   {token}  "},
        {"Authorization": f"Bearer {secret}"},
        {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": secret},
        {"Authorization": "Bearer", "X-API-Key": secret},
        {"X-API-Key": secret},
    ]
    for headers in ok:
        resp = await harness.client.get("/api/v1/auth/me", headers=headers)
        assert resp.status_code == 200, (headers, resp.text)
    for headers in (
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"X-API-Key": ""},
        {"Authorization": "Token abc"},
    ):
        resp = await harness.client.get("/api/v1/auth/me", headers=headers)
        assert_problem(resp, 401, "unauthorized")

"""Users CRUD: who may do what, validation, pagination, the last admin."""

from __future__ import annotations

import base64

import pytest

from tests.auth.conftest import assert_problem, login
from tests.conftest import AppHarness
from tests.fixtures.backends import Backend
from ymera.auth.permissions import ROLE_PERMISSIONS, Permission, Role

NEW_USER = {"username": "newbie", "password": "password-123456", "role": "developer"}


@pytest.mark.parametrize("role", list(Role))
async def test_users_endpoints_follow_the_matrix(harness: AppHarness, role: Role) -> None:
    headers = await harness.headers(role)
    target = await harness.create_user("target", Role.VIEWER)
    can_read = Permission.USERS_READ in ROLE_PERMISSIONS[role]
    can_write = Permission.USERS_WRITE in ROLE_PERMISSIONS[role]

    calls = {
        ("GET", "/api/v1/users", None): can_read,
        ("GET", f"/api/v1/users/{target}", None): can_read,
        ("POST", "/api/v1/users", "body"): can_write,
        ("PATCH", f"/api/v1/users/{target}", "patch"): can_write,
    }
    bodies = {"body": NEW_USER, "patch": {"email": "t@example.com"}, None: None}
    for (method, url, body), allowed in calls.items():
        resp = await harness.client.request(method, url, json=bodies[body], headers=headers)
        if allowed:
            assert resp.status_code in (200, 201), (method, url, resp.text)
        else:
            assert_problem(resp, 403, "missing_permission")


async def test_create_get_update_user(harness: AppHarness) -> None:
    admin = await harness.headers(Role.ADMIN)
    resp = await harness.client.post(
        "/api/v1/users", json={**NEW_USER, "email": "n@example.com"}, headers=admin
    )
    assert resp.status_code == 201, resp.text
    user = resp.json()
    assert user["role"] == "developer"
    assert user["is_active"] is True
    assert "password" not in resp.text
    assert "password_hash" not in resp.text

    got = await harness.client.get(f"/api/v1/users/{user['id']}", headers=admin)
    assert got.json() == user
    assert (await login(harness, "newbie"))["access_token"]

    patched = await harness.client.patch(
        f"/api/v1/users/{user['id']}", json={"role": "operator"}, headers=admin
    )
    assert patched.json()["role"] == "operator"
    assert patched.json()["updated_at"] >= user["updated_at"]


async def test_user_validation_and_conflicts(harness: AppHarness) -> None:
    admin = await harness.headers(Role.ADMIN)
    first = await harness.client.post("/api/v1/users", json=NEW_USER, headers=admin)
    assert first.status_code == 201
    dup = await harness.client.post("/api/v1/users", json=NEW_USER, headers=admin)
    assert_problem(dup, 409, "user_exists")
    for bad in (
        {**NEW_USER, "username": "has space"},
        {**NEW_USER, "username": "x", "password": "short"},
        {**NEW_USER, "username": "y", "role": "root"},
        {**NEW_USER, "username": "z", "email": "a\u0000b"},
    ):
        resp = await harness.client.post("/api/v1/users", json=bad, headers=admin)
        assert_problem(resp, 422, "validation_error")
    missing = await harness.client.get("/api/v1/users/no-such-user", headers=admin)
    assert_problem(missing, 404, "user_not_found")


async def test_nul_in_an_id_is_a_client_error_on_every_backend(
    harness: AppHarness, backend: Backend
) -> None:
    admin = await harness.headers(Role.ADMIN)
    for url in ("/api/v1/users/a%00b", "/api/v1/api-keys/a%00b"):
        resp = await harness.client.get(url, headers=admin)
        # PostgreSQL cannot store or compare NUL in text: a 400, never a 500.
        if backend.db_kind == "postgresql":
            assert_problem(resp, 400, "invalid_text")
        else:
            assert resp.status_code == 404, resp.text
    # A login name with NUL cannot exist: bad credentials without a query.
    resp = await harness.client.post(
        "/api/v1/auth/token", json={"username": "a\u0000", "password": "x"}
    )
    assert_problem(resp, 401, "invalid_credentials")


async def test_list_users_pages_through_everyone_once(harness: AppHarness) -> None:
    admin = await harness.headers(Role.ADMIN)  # creates admin-user (plus the bootstrap admin)
    for i in range(5):
        await harness.create_user(f"user{i}", Role.VIEWER)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await harness.client.get("/api/v1/users", params=params, headers=admin)).json()
        assert len(page["items"]) <= 2
        seen += [u["username"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(["admin", "admin-user", *(f"user{i}" for i in range(5))])
    assert len(seen) == len(set(seen))


# Not base64 JSON; and a well-formed cursor that lacks its key.
@pytest.mark.parametrize("cursor", ["%%%", base64.urlsafe_b64encode(b'{"x": 1}').decode()])
async def test_bad_cursor_is_400(harness: AppHarness, cursor: str) -> None:
    admin = await harness.headers(Role.ADMIN)
    for url in ("/api/v1/users", "/api/v1/api-keys"):
        resp = await harness.client.get(url, params={"cursor": cursor}, headers=admin)
        assert_problem(resp, 400, "invalid_cursor")


async def test_the_last_active_admin_cannot_be_demoted_or_disabled(harness: AppHarness) -> None:
    admin = await harness.headers(Role.ADMIN)
    users = (await harness.client.get("/api/v1/users", headers=admin)).json()["items"]
    ids = {u["username"]: u["id"] for u in users}
    # Two admins: the bootstrap "admin" and "admin-user". Demoting one is fine.
    demoted = await harness.client.patch(
        f"/api/v1/users/{ids['admin']}", json={"role": "viewer"}, headers=admin
    )
    assert demoted.status_code == 200
    last = ids["admin-user"]
    for change in ({"role": "operator"}, {"is_active": False}):
        resp = await harness.client.patch(f"/api/v1/users/{last}", json=change, headers=admin)
        assert_problem(resp, 409, "last_admin")
    # Changes that keep an admin are fine.
    ok = await harness.client.patch(
        f"/api/v1/users/{last}", json={"role": "admin", "email": "root@example.com"}, headers=admin
    )
    assert ok.status_code == 200

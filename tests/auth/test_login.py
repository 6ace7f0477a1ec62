from __future__ import annotations

from tests.conftest import AppHarness
from ymera.auth.permissions import Role


async def test_login_form_and_json_then_me(harness: AppHarness) -> None:
    await harness.create_user("alice", Role.DEVELOPER)
    form = await harness.client.post(
        "/api/v1/auth/token", data={"username": "alice", "password": "password-123456"}
    )
    assert form.status_code == 200, form.text
    js = await harness.client.post(
        "/api/v1/auth/token", json={"username": "alice", "password": "password-123456"}
    )
    assert js.status_code == 200, js.text
    body = js.json()
    assert body["token_type"] == "bearer"
    assert body["refresh_token"].startswith("ymr_")
    me = await harness.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert "tasks:write" in me.json()["permissions"]
    assert "users:write" not in me.json()["permissions"]


async def test_bad_password_is_401_problem(harness: AppHarness) -> None:
    await harness.create_user("bob", Role.VIEWER)
    resp = await harness.client.post(
        "/api/v1/auth/token", data={"username": "bob", "password": "wrong-password"}
    )
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "invalid_credentials"
    assert resp.headers["x-request-id"]

"""Framework-level failures (no route, wrong method, bad body) are problem+json too."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import AppHarness

PROBLEM = "application/problem+json"


def _problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:ymera:problem:{code}"
    assert body["title"]
    assert body["detail"]
    assert body["request_id"] == resp.headers["x-request-id"]
    return body


async def test_unknown_route_is_404_problem(harness: AppHarness) -> None:
    resp = await harness.client.get("/api/v1/no-such-thing")
    body = _problem(resp, 404, "not_found")
    assert body["instance"] == "/api/v1/no-such-thing"


async def test_wrong_method_is_405_problem_with_allow(harness: AppHarness) -> None:
    resp = await harness.client.delete("/healthz")
    _problem(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["allow"]


async def test_invalid_json_body_is_422_problem_with_errors(harness: AppHarness) -> None:
    resp = await harness.client.post(
        "/api/v1/auth/refresh",
        content=b'{"refresh_token": ',
        headers={"Content-Type": "application/json"},
    )
    body = _problem(resp, 422, "validation_error")
    assert body["errors"], body
    assert body["errors"][0]["type"] == "json_invalid"
    assert body["errors"][0]["loc"][0] == "body"


async def test_body_of_the_wrong_shape_is_422_problem_naming_the_field(
    harness: AppHarness,
) -> None:
    resp = await harness.client.post("/api/v1/auth/refresh", json={"refresh_token": 42})
    body = _problem(resp, 422, "validation_error")
    assert [e["loc"] for e in body["errors"]] == [["body", "refresh_token"]]
    assert "refresh_token" in body["detail"]

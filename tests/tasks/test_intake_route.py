"""The submit endpoints' own route (`tasks.endpoints._IntakeRoute`): a
well-formed submission skips FastAPI's generic dependency resolution, and every
request answers as FastAPI's handler answers it (the same request sent with a
content type the fast path leaves to FastAPI is the reference)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import AppHarness
from ymera.auth.permissions import Role
from ymera.middleware import drain_signal

FAST = "application/json"
STANDARD = "application/json; charset=utf-8"  # the same body, through FastAPI's handler


def _summary(resp: httpx.Response) -> tuple[int, Any]:
    """What must match between the two paths: the status, and the problem's
    code and the invalid fields' locations, or the answer's keys."""
    body = resp.json()
    if resp.status_code >= 400:
        errors = body.get("errors") or []
        return resp.status_code, (body.get("code"), sorted(str(e.get("loc")) for e in errors))
    if isinstance(body, list):
        return resp.status_code, [sorted(item) for item in body]
    return resp.status_code, sorted(body)


async def _both(
    harness: AppHarness, path: str, body: str, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    answers = []
    for content_type in (FAST, STANDARD):
        answers.append(
            await harness.client.post(
                path, content=body, headers={**headers, "Content-Type": content_type}
            )
        )
    return answers[0], answers[1]


async def test_a_well_formed_submission_skips_fastapis_dependency_resolution(
    harness: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastapi.routing

    dev = await harness.headers(Role.DEVELOPER)
    real = fastapi.routing.solve_dependencies
    solved: list[str] = []

    async def spy(*args: Any, **kw: Any) -> Any:
        solved.append(kw["request"].url.path)
        return await real(*args, **kw)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", spy)
    one = json.dumps({"type": "t", "priority": 7})
    batch = json.dumps({"tasks": [{"type": "t"}, {"type": "u"}]})
    for path, body in (("/api/v1/tasks", one), ("/api/v1/tasks/batch", batch)):
        fast, standard = await _both(harness, path, body, dev)
        assert fast.status_code == 201, fast.text
        assert _summary(fast) == _summary(standard)
    assert solved == ["/api/v1/tasks", "/api/v1/tasks/batch"]  # the STANDARD ones only
    assert fast.json()[0]["type"] == "t"


async def test_every_refusal_is_fastapis_as_before(harness: AppHarness) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    viewer = await harness.headers(Role.VIEWER)
    good = json.dumps({"type": "t"})
    cases: list[tuple[str, str, dict[str, str], int]] = [
        ("/api/v1/tasks", json.dumps({"type": "t", "priority": 12}), dev, 422),
        ("/api/v1/tasks", "{", dev, 422),
        ("/api/v1/tasks", json.dumps([{"type": "t"}]), dev, 422),
        ("/api/v1/tasks", good, {**dev, "Idempotency-Key": "k" * 201}, 422),
        ("/api/v1/tasks", good, {**dev, "Prefer": "x" * 201}, 422),
        ("/api/v1/tasks", good, {}, 401),
        ("/api/v1/tasks", "{", {}, 422),  # (FastAPI parses the JSON before the caller)
        ("/api/v1/tasks", good, viewer, 403),
        ("/api/v1/tasks", json.dumps({"type": "t", "preferred_only": True}), dev, 422),
        ("/api/v1/tasks/batch", json.dumps({"tasks": []}), dev, 422),
        ("/api/v1/tasks/batch", good, {}, 401),
    ]
    for path, body, headers, status in cases:
        fast, standard = await _both(harness, path, body, headers)
        assert fast.status_code == status, (path, body, fast.text)
        assert _summary(fast) == _summary(standard), (path, body)


async def test_idempotent_replays_and_the_drain_through_the_intake_route(
    harness: AppHarness,
) -> None:
    dev = await harness.headers(Role.DEVELOPER)
    keyed = {**dev, "Idempotency-Key": "intake-1", "Content-Type": FAST}
    first = await harness.client.post("/api/v1/tasks", content='{"type": "t"}', headers=keyed)
    again = await harness.client.post("/api/v1/tasks", content='{"type": "t"}', headers=keyed)
    other = await harness.client.post("/api/v1/tasks", content='{"type": "u"}', headers=keyed)
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json()["id"] == first.json()["id"]
    drain_signal(harness.app).set()
    try:
        fast, standard = await _both(harness, "/api/v1/tasks", '{"type": "t"}', dev)
        assert fast.status_code == 503
        assert _summary(fast) == _summary(standard)
        assert fast.json()["code"] == "shutting_down"
    finally:
        drain_signal(harness.app).clear()

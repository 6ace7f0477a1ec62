"""Every route of the app is protected, or deliberately public.

The walk covers every HTTP and WebSocket route ``create_app`` builds, so an
endpoint added later is checked without touching this file. For each route:

- public (the allow-list below): it must not demand credentials;
- otherwise it must depend on a ``PermissionChecker`` (``require(...)``), found
  in the route's dependency tree, or be listed as needing authentication only;
- without credentials it answers 401 (a WebSocket handshake is refused with
  401); with a garbage token, 401;
- with a token of a role lacking the route's permission (the most privileged
  such role), 403 ``missing_permission``. If every role holds it, only the 401
  checks apply.

A route that is neither public nor protected fails the test, so an unprotected
endpoint cannot slip in by accident. A WebSocket that authenticates inside its
protocol (credentials in the first frame) must be listed in
``IN_PROTOCOL_AUTH`` with the frame to send, and is probed the same way: a bad
credential and a credential lacking the permission must each close the socket
with the listed code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import Depends, FastAPI, WebSocket
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.convertors import FloatConvertor, IntegerConvertor, PathConvertor, UUIDConvertor

from tests.conftest import AppHarness
from ymera.auth.dependencies import Authenticated, PermissionChecker, require
from ymera.auth.permissions import ROLE_PERMISSIONS, Permission, Role
from ymera.errors import PROBLEM_JSON

PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/docs/oauth2-redirect",
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
    }
)
# Needs a valid principal, whatever its permissions.
AUTHENTICATED_ONLY_PATHS = frozenset({"/api/v1/auth/me"})
# Authenticated by a token of their own (not a principal): still 401 without it.
OWN_TOKEN_PATHS = frozenset({"/api/v1/tasks/{task_id}/callback"})


@dataclass(frozen=True)
class InProtocolAuth:
    """A WebSocket that accepts first and authenticates its first frame."""

    first_frame: Callable[[str], dict[str, Any]]  # carrying this credential
    permission: Permission
    unauthenticated_close: int
    forbidden_close: int


IN_PROTOCOL_AUTH: dict[str, InProtocolAuth] = {
    # The worker protocol: the agent key travels in the hello frame.
    "/api/v1/agents/connect": InProtocolAuth(
        first_frame=lambda credential: {"type": "hello", "protocol": 1, "api_key": credential},
        permission=Permission.AGENTS_CONNECT,
        unauthenticated_close=4401,
        forbidden_close=4403,
    ),
    # A chat session live: the token travels in the hello frame (or a subprotocol).
    "/api/v1/chat/sessions/{session_id}/ws": InProtocolAuth(
        first_frame=lambda credential: {"type": "hello", "token": credential},
        permission=Permission.CHAT_READ,
        unauthenticated_close=4401,
        forbidden_close=4403,
    ),
}

# Most privileged first: the role picked for the 403 check lacks the permission
# but holds as much else as possible.
ROLES_BY_PRIVILEGE = (Role.ADMIN, Role.OPERATOR, Role.DEVELOPER, Role.VIEWER)
DUMMY_ID = "00000000-0000-7000-8000-000000000000"


@dataclass(frozen=True)
class Endpoint:
    kind: str  # "http" | "websocket" | "other"
    path: str
    methods: tuple[str, ...]
    url: str
    permissions: frozenset[Permission]
    authenticates: bool

    @property
    def label(self) -> str:
        return f"{'/'.join(self.methods) or self.kind.upper()} {self.path}"


def _dependency_calls(dependant: Dependant | None) -> Iterator[Any]:
    if dependant is None:
        return
    for dep in dependant.dependencies:
        yield dep.call
        yield from _dependency_calls(dep)


def _dummy(convertor: Any) -> str:
    if isinstance(convertor, IntegerConvertor):
        return "1"
    if isinstance(convertor, FloatConvertor):
        return "1.5"
    if isinstance(convertor, UUIDConvertor):
        return DUMMY_ID
    if isinstance(convertor, PathConvertor):
        return "some/path"
    return DUMMY_ID


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every route of the app, with its permissions found by introspection."""
    found = []
    for ctx in iter_route_contexts(app.routes):
        original = ctx.original_route
        path = ctx.path or repr(original)
        kind = (
            "http"
            if isinstance(original, APIRoute) or ctx.methods
            else "websocket"
            if isinstance(original, APIWebSocketRoute)
            else "other"
        )
        dependant = getattr(ctx, "dependant", None)
        calls = list(_dependency_calls(dependant))
        convertors = getattr(ctx, "param_convertors", {}) or {}
        url = (ctx.path_format or path).format(**{k: _dummy(c) for k, c in convertors.items()})
        found.append(
            Endpoint(
                kind=kind,
                path=path,
                methods=tuple(sorted(m for m in ctx.methods or () if m != "HEAD")),
                url=url,
                permissions=frozenset(
                    c.permission for c in calls if isinstance(c, PermissionChecker)
                ),
                authenticates=any(isinstance(c, Authenticated) for c in calls),
            )
        )
    return found


def protection_problems(app: FastAPI) -> list[str]:
    """Routes neither public nor protected, and allow-list entries that are stale."""
    problems = []
    paths = set()
    for ep in endpoints(app):
        paths.add(ep.path)
        if ep.path in PUBLIC_PATHS:
            continue
        if ep.kind == "other":
            problems.append(f"{ep.label}: not an API route (a mount?); it cannot be checked")
        elif ep.path in IN_PROTOCOL_AUTH:
            if ep.kind != "websocket":
                problems.append(f"{ep.label}: in-protocol authentication is for WebSockets only")
        elif ep.path in OWN_TOKEN_PATHS:
            continue
        elif ep.path in AUTHENTICATED_ONLY_PATHS:
            if not ep.authenticates:
                problems.append(f"{ep.label}: listed as authenticated but never authenticates")
        elif not ep.permissions:
            problems.append(f"{ep.label}: no require(Permission...) and not in PUBLIC_PATHS")
    allow_listed = PUBLIC_PATHS | AUTHENTICATED_ONLY_PATHS | OWN_TOKEN_PATHS | set(IN_PROTOCOL_AUTH)
    for stale in sorted(allow_listed - paths):
        problems.append(f"{stale}: allow-listed but no such route")
    return problems


def role_lacking(permissions: frozenset[Permission]) -> Role | None:
    for role in ROLES_BY_PRIVILEGE:
        if not permissions <= ROLE_PERMISSIONS[role]:
            return role
    return None


async def websocket_handshake(
    app: Any, url: str, headers: dict[str, str], first_frame: dict[str, Any] | None = None
) -> tuple[str, int]:
    """Open a WebSocket in-process: ("denied", HTTP status), ("closed", close
    code) or ("accepted", 0). Offers the denial-response extension, as uvicorn
    does. With ``first_frame``, sends it once accepted and reports how the
    socket then closes."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": url,
        "raw_path": url.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"ymera.test")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("ymera.test", 80),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
        "state": {},
    }
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})
    outcome: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()

    async def send(message: dict[str, Any]) -> None:
        kind = message["type"]
        if outcome.done():
            return
        if kind == "websocket.http.response.start":
            outcome.set_result(("denied", message["status"]))
        elif kind == "websocket.accept" and first_frame is not None:
            inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(first_frame)})
        elif kind == "websocket.accept":
            outcome.set_result(("accepted", 0))
        elif kind == "websocket.close":
            outcome.set_result(("closed", message.get("code", 1000)))

    task = asyncio.create_task(app(scope, inbox.get, send))
    try:
        return await asyncio.wait_for(asyncio.shield(outcome), timeout=10)
    finally:
        inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        try:
            await asyncio.wait_for(task, timeout=5)
        except Exception:  # the app's own handling of the disconnect is not under test
            task.cancel()


async def in_protocol_refusals(h: AppHarness, ep: Endpoint, spec: InProtocolAuth) -> list[str]:
    problems = []
    for name, credential in (("no credential", ""), ("garbage credential", "ymk_not-a-key")):
        got = await websocket_handshake(h.app, ep.url, {}, spec.first_frame(credential))
        if got != ("closed", spec.unauthenticated_close):
            problems.append(
                f"{ep.label} with {name}: expected close {spec.unauthenticated_close}, got {got}"
            )
    role = role_lacking(frozenset({spec.permission}))
    if role is not None:
        token = await h.token_for(role)
        got = await websocket_handshake(h.app, ep.url, {}, spec.first_frame(token))
        if got != ("closed", spec.forbidden_close):
            problems.append(
                f"{ep.label} as {role}: expected close {spec.forbidden_close}, got {got}"
            )
    return problems


async def refusals(h: AppHarness, ep: Endpoint) -> list[str]:
    """What is wrong with how this route refuses callers (empty: all fine)."""
    problems = []
    garbage = {"Authorization": "Bearer not-a-token"}
    if ep.path in IN_PROTOCOL_AUTH:
        return await in_protocol_refusals(h, ep, IN_PROTOCOL_AUTH[ep.path])
    if ep.kind == "websocket":
        for name, headers in (("no credentials", {}), ("garbage token", garbage)):
            got = await websocket_handshake(h.app, ep.url, headers)
            if got != ("denied", 401):
                problems.append(f"{ep.label} with {name}: expected denial 401, got {got}")
        role = role_lacking(ep.permissions)
        if role is not None:
            got = await websocket_handshake(h.app, ep.url, await h.headers(role))
            if got != ("denied", 403):
                problems.append(f"{ep.label} as {role}: expected denial 403, got {got}")
        return problems

    for method in ep.methods:
        label = f"{method} {ep.path}"
        if ep.path in PUBLIC_PATHS:
            resp = await h.client.request(method, ep.url)
            if resp.status_code == 401:
                problems.append(f"{label}: public but answered 401")
            continue
        for name, headers in (("no credentials", {}), ("garbage token", garbage)):
            resp = await h.client.request(method, ep.url, headers=headers)
            if resp.status_code != 401 or not resp.headers.get("content-type", "").startswith(
                PROBLEM_JSON
            ):
                problems.append(
                    f"{label} with {name}: expected a 401 problem, got {resp.status_code}"
                )
        role = role_lacking(ep.permissions)
        if role is None:
            continue
        resp = await h.client.request(method, ep.url, headers=await h.headers(role))
        code = resp.json().get("code") if resp.status_code == 403 else None
        if resp.status_code != 403 or code != "missing_permission":
            problems.append(
                f"{label} as {role} (lacks {sorted(p.value for p in ep.permissions)}): "
                f"expected 403 missing_permission, got {resp.status_code} {resp.text[:200]}"
            )
    return problems


# One backend is enough: routing and dependencies do not depend on storage.
@pytest.mark.parametrize("backend", ["sqlite-memory"], indirect=True)
async def test_every_route_is_protected_or_deliberately_public(harness: AppHarness) -> None:
    assert protection_problems(harness.app) == []
    found = endpoints(harness.app)
    problems = []
    for ep in found:
        problems += await refusals(harness, ep)
    assert problems == [], "\n".join(problems)
    # The walk did see the API: a broken introspection must not pass silently.
    checked = [ep for ep in found if ep.permissions]
    assert len(checked) >= 10, [ep.label for ep in found]
    assert any(role_lacking(ep.permissions) for ep in checked)


# --- the walk itself catches what it should --------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite-memory"], indirect=True)
async def test_walk_flags_unprotected_routes_and_checks_websockets(harness: AppHarness) -> None:
    app = harness.app

    @app.get("/api/v1/oops")
    async def oops() -> dict[str, str]:
        return {}

    @app.websocket("/api/v1/oops-ws")
    async def oops_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    @app.websocket("/api/v1/guarded-ws")
    async def guarded_ws(
        websocket: WebSocket, _: Any = Depends(require(Permission.USERS_WRITE))
    ) -> None:
        await websocket.accept()
        await websocket.close()

    problems = protection_problems(app)
    assert any(p.startswith("GET /api/v1/oops:") for p in problems), problems
    assert any("/api/v1/oops-ws" in p for p in problems), problems
    assert not any("guarded-ws" in p for p in problems), problems

    by_path = {ep.path: ep for ep in endpoints(app)}
    guarded = by_path["/api/v1/guarded-ws"]
    assert guarded.kind == "websocket"
    assert guarded.permissions == {Permission.USERS_WRITE}
    assert await refusals(harness, guarded) == []
    # A role holding the permission gets through the handshake.
    admin = await harness.headers(Role.ADMIN)
    assert await websocket_handshake(app, guarded.url, admin) == ("accepted", 0)
    # An unprotected socket is accepted without credentials: the check reports it.
    assert await refusals(harness, by_path["/api/v1/oops-ws"])


def test_role_lacking_picks_the_most_privileged_role_without_it() -> None:
    assert role_lacking(frozenset({Permission.USERS_WRITE})) is Role.OPERATOR
    assert role_lacking(frozenset({Permission.TASKS_WRITE})) is Role.VIEWER
    assert role_lacking(frozenset({Permission.EVENTS_READ})) is None

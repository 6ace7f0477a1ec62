"""Authentication and permission checks: the one dependency every endpoint uses.

``require(Permission.X)`` authenticates the caller (Bearer JWT, or an API key as
``Authorization: Bearer ymk_...`` or ``X-API-Key``), applies the per-principal
rate limit, and checks the permission: 401 without valid credentials, 403 when
the principal lacks the permission.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from ymera.auth import service
from ymera.auth.cache import PrincipalCache
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.errors import Forbidden, Unauthorized
from ymera.state import AppState

bearer_scheme = HTTPBearer(auto_error=False, description="JWT access token or API key")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")

PRINCIPAL_KEY = "ymera_principal"


async def authenticate(state: AppState, token: str) -> Principal:
    """Resolve credentials (from the principal cache when fresh, else in a read
    transaction); an API key's last use is written in a short transaction of its
    own, at most once a minute. Requests that miss the cache while the same
    credential is being resolved share that resolution's result."""
    now = state.clock.now()
    cache: PrincipalCache | None = state.extras.get("principal_cache")
    if cache is None or not cache.enabled:
        return await _resolve(state, token, now)
    cached = cache.get(token, now=now.timestamp())
    if cached is not None:
        return cached
    pending = cache.pending(token)
    if pending is not None:
        shared = await _join(pending)
        if shared is not None:
            return shared
    future = cache.begin(token)
    try:
        principal = await _resolve(state, token, now)
    except BaseException:
        future.cancel()  # the others resolve it themselves
        raise
    finally:
        cache.end(token, future)
    future.set_result(principal)
    cache.put(token, principal, now=now.timestamp())
    return principal


async def _join(pending: asyncio.Future[Principal]) -> Principal | None:
    """The result of another request's resolution; None if it failed."""
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        if pending.cancelled():
            return None
        raise  # this request was cancelled


async def _resolve(state: AppState, token: str, now: datetime) -> Principal:
    async with state.db.transaction(readonly=True) as session:
        if not service.looks_like_api_key(token):
            principal = await service.authenticate_access_token(
                session, token=token, codec=state.codec, now=now
            )
            touch = False
        else:
            principal, touch = await service.authenticate_api_key(session, key=token, now=now)
    if touch and principal.api_key_id is not None:
        async with state.db.transaction() as session:
            await service.record_api_key_use(session, key_id=principal.api_key_id, now=now)
    return principal


async def current_principal(
    conn: HTTPConnection,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    """The authenticated caller of an HTTP request or a WebSocket handshake."""
    cached = getattr(conn.state, PRINCIPAL_KEY, None)
    if isinstance(cached, Principal):
        return cached
    token = bearer.credentials if bearer else api_key
    if not token:
        raise Unauthorized("Authentication required")
    state: AppState = conn.app.state.ymera
    principal = await authenticate(state, token)
    await state.limiter.hit(state.limiter.default, principal.id)
    setattr(conn.state, PRINCIPAL_KEY, principal)
    return principal


class PermissionChecker:
    """A dependency that returns the principal if it holds ``permission``."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(
        self, principal: Annotated[Principal, Depends(current_principal)]
    ) -> Principal:
        if not principal.can(self.permission):
            raise Forbidden(
                f"Missing permission {self.permission.value}",
                code="missing_permission",
                permission=self.permission.value,
            )
        return principal

    def __repr__(self) -> str:
        return f"require({self.permission.value})"


def require(permission: Permission) -> PermissionChecker:
    return PermissionChecker(permission)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]

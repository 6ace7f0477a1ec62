"""Login, token refresh, logout, who-am-I; users; API keys."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, ValidationError

from ymera.auth import service
from ymera.auth.dependencies import CurrentPrincipal, require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    MeOut,
    RefreshRequest,
    TokenPair,
    TokenRequest,
    UserCreate,
    UserOut,
    UserUpdate,
)
from ymera.errors import BadRequest, Unprocessable
from ymera.kit.pagination import Page
from ymera.state import AppState, DbSession, State

router = APIRouter(prefix="/api/v1", tags=["auth"])

_PASSWORD_GRANT: dict[str, Any] = {
    "title": "PasswordGrant",
    "type": "object",
    "properties": {
        "grant_type": {"type": "string", "enum": ["password"]},
        "username": {"type": "string", "minLength": 1, "maxLength": 64},
        "password": {"type": "string", "minLength": 1, "maxLength": 1024},
        "scope": {"type": "string", "description": "Ignored."},
    },
    "required": ["username", "password"],
}
_REFRESH_GRANT: dict[str, Any] = {
    "title": "RefreshTokenGrant",
    "type": "object",
    "properties": {
        "grant_type": {"type": "string", "enum": ["refresh_token"]},
        "refresh_token": {"type": "string", "minLength": 1, "maxLength": 256},
    },
    "required": ["grant_type", "refresh_token"],
}
_GRANT = {"oneOf": [_PASSWORD_GRANT, _REFRESH_GRANT]}
_TOKEN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _GRANT},
            "application/x-www-form-urlencoded": {"schema": _GRANT},
        },
    }
}


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _read_token_body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            raw = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise BadRequest("Body is not valid JSON", code="invalid_json") from exc
        if not isinstance(raw, dict):
            raise Unprocessable("Body must be a JSON object")
        return raw
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    raise Unprocessable(
        "Send application/json or application/x-www-form-urlencoded",
        code="unsupported_media_type",
        status_code=415,
    )


@router.post(
    "/auth/token",
    response_model=TokenPair,
    openapi_extra=_TOKEN_BODY,
    responses={401: {"description": "Bad credentials"}, 429: {"description": "Too many"}},
)
async def issue_token(request: Request, state: State) -> TokenPair:
    """Log in with a username and password (OAuth2 password grant, form or JSON).

    Returns a short-lived JWT access token and a refresh token. The body may
    instead be `grant_type=refresh_token` with `refresh_token`, which works like
    `POST /api/v1/auth/refresh`.
    """
    await state.limiter.hit(state.limiter.login, f"login:{_client_address(request)}")
    body = await _read_token_body(request)
    grant = body.get("grant_type", "password")
    if grant == "refresh_token":
        return await _refresh(state, _validated(RefreshRequest, body).refresh_token)
    if grant != "password":
        raise Unprocessable(
            "grant_type must be password or refresh_token", code="unsupported_grant_type"
        )
    creds = _validated(TokenRequest, body)
    async with state.db.transaction() as session:
        return await service.login(
            session,
            username=creds.username,
            password=creds.password,
            codec=state.codec,
            now=state.clock.now(),
            refresh_ttl=state.settings.auth.refresh_token_ttl,
        )


M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Unprocessable(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


async def _refresh(state: AppState, token: str) -> TokenPair:
    # A detected reuse raises after revoking the token family: commit anyway.
    async with state.db.transaction(commit_on=(service.RefreshReuseDetected,)) as session:
        return await service.refresh(
            session,
            refresh_token=token,
            codec=state.codec,
            now=state.clock.now(),
            refresh_ttl=state.settings.auth.refresh_token_ttl,
        )


@router.post(
    "/auth/refresh",
    response_model=TokenPair,
    responses={401: {"description": "Invalid, expired or reused refresh token"}},
)
async def refresh_token(body: RefreshRequest, request: Request, state: State) -> TokenPair:
    """Exchange a refresh token for a new pair. The old refresh token stops working;
    presenting it again revokes every token of that login."""
    await state.limiter.hit(state.limiter.login, f"login:{_client_address(request)}")
    return await _refresh(state, body.refresh_token)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, session: DbSession, state: State) -> Response:
    """Revoke the refresh token and every token rotated from the same login."""
    await service.logout(session, refresh_token=body.refresh_token, now=state.clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/auth/me", response_model=MeOut)
async def me(principal: CurrentPrincipal) -> MeOut:
    """Who the credentials belong to and what they may do."""
    return MeOut(
        kind=principal.kind,
        user_id=principal.user_id,
        username=principal.username,
        role=principal.role,
        permissions=sorted(p.value for p in principal.permissions),
        api_key_id=principal.api_key_id,
        agent_id=principal.agent_id,
    )


# --- users ---------------------------------------------------------------------------

ReadUsers = Annotated[Principal, Depends(require(Permission.USERS_READ))]
WriteUsers = Annotated[Principal, Depends(require(Permission.USERS_WRITE))]
Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("/users", response_model=Page[UserOut], tags=["users"])
async def list_users(
    session: DbSession, _: ReadUsers, cursor: str | None = None, limit: Limit = 50
) -> Page[UserOut]:
    """List users, oldest first, with cursor pagination."""
    page = await service.list_users(session, cursor=cursor, limit=limit)
    return Page[UserOut](
        items=[UserOut.model_validate(u) for u in page.items], next_cursor=page.next_cursor
    )


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
async def create_user(
    body: UserCreate, session: DbSession, state: State, principal: WriteUsers
) -> UserOut:
    """Create a user with a role."""
    user = await service.create_user(
        session,
        username=body.username,
        password=body.password,
        role=body.role,
        email=body.email,
        actor=principal.id,
        now=state.clock.now(),
    )
    return UserOut.model_validate(user)


@router.get("/users/{user_id}", response_model=UserOut, tags=["users"])
async def get_user(user_id: str, session: DbSession, _: ReadUsers) -> UserOut:
    """Get one user."""
    return UserOut.model_validate(await service.get_user(session, user_id=user_id))


@router.patch("/users/{user_id}", response_model=UserOut, tags=["users"])
async def update_user(
    user_id: str, body: UserUpdate, session: DbSession, state: State, principal: WriteUsers
) -> UserOut:
    """Change a user's role, password, email or active flag. A new password or
    deactivation revokes the user's refresh tokens."""
    user = await service.update_user(
        session,
        user_id=user_id,
        now=state.clock.now(),
        role=body.role,
        password=body.password,
        is_active=body.is_active,
        email=body.email,
        actor=principal.id,
    )
    return UserOut.model_validate(user)


# --- API keys ------------------------------------------------------------------------

ReadKeys = Annotated[Principal, Depends(require(Permission.API_KEYS_READ))]
WriteKeys = Annotated[Principal, Depends(require(Permission.API_KEYS_WRITE))]


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, tags=["api-keys"])
async def create_api_key(
    body: ApiKeyCreate, session: DbSession, state: State, principal: WriteKeys
) -> ApiKeyCreated:
    """Create an API key. The secret is in the response once and never again.

    Without `agent_id` the key carries `scopes` (default: all of your
    permissions; never more). With `agent_id` it is an agent key bound to that
    agent, with the fixed agent scope.
    """
    row, secret = await service.create_api_key(
        session,
        principal=principal,
        name=body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        agent_id=body.agent_id,
        now=state.clock.now(),
    )
    return ApiKeyCreated.model_validate(
        {**ApiKeyOut.model_validate(row).model_dump(), "key": secret}
    )


@router.get("/api-keys", response_model=Page[ApiKeyOut], tags=["api-keys"])
async def list_api_keys(
    session: DbSession,
    principal: ReadKeys,
    all: Annotated[bool, Query(description="Every owner's keys (api_keys:admin).")] = False,
    include_revoked: bool = False,
    agent_id: str | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> Page[ApiKeyOut]:
    """List your API keys (or everyone's with `all=true`)."""
    page = await service.list_api_keys(
        session,
        principal=principal,
        all_owners=all,
        include_revoked=include_revoked,
        agent_id=agent_id,
        cursor=cursor,
        limit=limit,
    )
    return Page[ApiKeyOut](
        items=[ApiKeyOut.model_validate(k) for k in page.items], next_cursor=page.next_cursor
    )


@router.get("/api-keys/{key_id}", response_model=ApiKeyOut, tags=["api-keys"])
async def get_api_key(key_id: str, session: DbSession, principal: ReadKeys) -> ApiKeyOut:
    """Get one of your API keys (any key with api_keys:admin)."""
    return ApiKeyOut.model_validate(
        await service.get_api_key(session, principal=principal, key_id=key_id)
    )


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, tags=["api-keys"])
async def revoke_api_key(
    key_id: str, session: DbSession, state: State, principal: WriteKeys
) -> ApiKeyOut:
    """Revoke an API key; it stops working at once. Revoking twice is harmless."""
    row = await service.revoke_api_key(
        session, principal=principal, key_id=key_id, now=state.clock.now()
    )
    return ApiKeyOut.model_validate(row)

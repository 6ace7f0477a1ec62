"""Users, login, refresh-token rotation, API keys and request authentication."""

from __future__ import annotations

import asyncio
import hmac
import re
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import service as agents_service
from ymera.auth import repository
from ymera.auth.passwords import generate_password, hash_password, verify_password
from ymera.auth.permissions import (
    AGENT_KEY_PERMISSIONS,
    Permission,
    Role,
    role_permissions,
)
from ymera.auth.principal import Principal
from ymera.auth.schemas import USERNAME_PATTERN, TokenPair
from ymera.auth.tokens import (
    API_KEY_LOOKUP_LENGTH,
    API_KEY_PREFIX,
    TokenCodec,
    new_api_key,
    new_refresh_token,
    sha256_hex,
)
from ymera.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
)
from ymera.events.outbox import record_event
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.auth import ApiKey, RefreshToken, User

BOOTSTRAP_ADMIN = "admin"
# Recording last use on every request would serialise writers; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)
_USERNAME = re.compile(USERNAME_PATTERN)


# Argon2 costs tens of milliseconds of CPU on purpose: run it off the event loop.
async def _hash(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def _verify(password: str, password_hash: str | None) -> bool:
    return await asyncio.to_thread(verify_password, password, password_hash)


def _after_id(cursor: str | None) -> str | None:
    after = decode_cursor(cursor)
    if not after:
        return None
    value = after.get("id")
    if not isinstance(value, str):
        raise BadRequest("Invalid cursor", code="invalid_cursor")
    return value


# --- users -----------------------------------------------------------------------------


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    role: Role,
    email: str | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> User:
    if not _USERNAME.match(username):
        raise Unprocessable(
            "username: 1-64 letters, digits or . _ @ -, starting with a letter or digit",
            code="invalid_username",
        )
    if await repository.get_user_by_username(session, username) is not None:
        raise Conflict(f"User {username!r} already exists", code="user_exists")
    user = User(
        id=new_id(),
        username=username,
        password_hash=await _hash(password),
        role=role.value,
        email=email,
        is_active=True,
    )
    if now is not None:
        user.created_at = user.updated_at = now
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"User {username!r} already exists", code="user_exists") from exc
    record_event(
        session,
        type="user.created",
        resource_type="user",
        resource_id=user.id,
        data={"username": username, "role": role.value},
        actor=actor,
    )
    return user


async def get_user(session: AsyncSession, *, user_id: str) -> User:
    user = await repository.get_user(session, user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found", code="user_not_found")
    return user


async def find_user(session: AsyncSession, *, ref: str) -> User | None:
    """A user by id, else by username (None when neither names one)."""
    user = await repository.get_user(session, ref)
    if user is None:
        user = await repository.get_user_by_username(session, ref)
    return user


async def list_users(session: AsyncSession, *, cursor: str | None, limit: int) -> Slice[User]:
    rows = await repository.list_users(session, after_id=_after_id(cursor), limit=limit + 1)
    nxt = encode_cursor({"id": rows[limit - 1].id}) if len(rows) > limit else None
    return Slice[User](items=list(rows[:limit]), next_cursor=nxt)


async def update_user(
    session: AsyncSession,
    *,
    user_id: str,
    now: datetime,
    role: Role | None = None,
    password: str | None = None,
    is_active: bool | None = None,
    email: str | None = None,
    actor: str | None = None,
) -> User:
    user = await get_user(session, user_id=user_id)
    changed: dict[str, object] = {}
    demoted = (role is not None and role != Role.ADMIN) or is_active is False
    if (
        demoted
        and user.role == Role.ADMIN.value
        and user.is_active
        and await repository.count_active_admins(session) <= 1
    ):
        raise Conflict("The last active admin cannot be demoted or deactivated", code="last_admin")
    if role is not None and role.value != user.role:
        user.role = role.value
        changed["role"] = role.value
    if email is not None and email != user.email:
        user.email = email
        changed["email"] = email
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        changed["is_active"] = is_active
    if password is not None:
        user.password_hash = await _hash(password)
        changed["password"] = True
    if not changed:
        return user
    if "password" in changed or changed.get("is_active") is False:
        await repository.revoke_user_tokens(session, user.id, now)
    user.updated_at = now
    await session.flush()
    record_event(
        session,
        type="user.updated",
        resource_type="user",
        resource_id=user.id,
        data={"changed": sorted(changed)},
        actor=actor,
    )
    return user


async def bootstrap_admin(session: AsyncSession) -> tuple[str, str] | None:
    """Create the first admin with a random password when there is no user at all."""
    if await repository.count_users(session) > 0:
        return None
    password = generate_password()
    await create_user(
        session, username=BOOTSTRAP_ADMIN, password=password, role=Role.ADMIN, actor="system"
    )
    return BOOTSTRAP_ADMIN, password


# --- tokens ----------------------------------------------------------------------------


async def _issue_pair(
    session: AsyncSession,
    *,
    user: User,
    family_id: str,
    codec: TokenCodec,
    now: datetime,
    refresh_ttl: int,
) -> tuple[TokenPair, RefreshToken]:
    access, _ = codec.issue_access(user_id=user.id, role=user.role, now=now)
    secret = new_refresh_token()
    row = RefreshToken(
        id=new_id(),
        user_id=user.id,
        family_id=family_id,
        token_hash=sha256_hex(secret),
        created_at=now,
        expires_at=now + timedelta(seconds=refresh_ttl),
    )
    session.add(row)
    await session.flush()
    pair = TokenPair(
        access_token=access,
        expires_in=codec.access_ttl,
        refresh_token=secret,
        refresh_expires_in=refresh_ttl,
    )
    return pair, row


async def login(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    codec: TokenCodec,
    now: datetime,
    refresh_ttl: int,
) -> TokenPair:
    user = None
    if _USERNAME.match(username):  # any other name cannot exist; skip the query
        user = await repository.get_user_by_username(session, username)
    ok = await _verify(password, user.password_hash if user else None)
    if user is None or not ok or not user.is_active:
        raise Unauthorized("Incorrect username or password", code="invalid_credentials")
    user.last_login_at = now
    pair, _ = await _issue_pair(
        session, user=user, family_id=new_id(), codec=codec, now=now, refresh_ttl=refresh_ttl
    )
    record_event(
        session, type="user.logged_in", resource_type="user", resource_id=user.id, actor=user.id
    )
    return pair


class RefreshReuseDetected(Unauthorized):
    code = "refresh_token_reused"


async def refresh(
    session: AsyncSession,
    *,
    refresh_token: str,
    codec: TokenCodec,
    now: datetime,
    refresh_ttl: int,
) -> TokenPair:
    """Rotate a refresh token. Reusing an already-rotated token revokes its family.

    The caller must commit even when this raises :class:`RefreshReuseDetected`,
    so the revocation sticks; the endpoint does that.
    """
    row = await repository.get_refresh_token_by_hash(session, sha256_hex(refresh_token))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise Unauthorized("Invalid or expired refresh token", code="invalid_refresh_token")
    if row.used_at is not None:
        await repository.revoke_family(session, row.family_id, now)
        record_event(
            session,
            type="auth.refresh_token_reused",
            resource_type="user",
            resource_id=row.user_id,
            data={"family_id": row.family_id},
            actor="system",
        )
        raise RefreshReuseDetected(
            "Refresh token was already used; every session of this login is revoked"
        )
    user = await repository.get_user(session, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("Invalid or expired refresh token", code="invalid_refresh_token")
    pair, new_row = await _issue_pair(
        session, user=user, family_id=row.family_id, codec=codec, now=now, refresh_ttl=refresh_ttl
    )
    row.used_at = now
    row.replaced_by = new_row.id
    await session.flush()
    return pair


async def logout(session: AsyncSession, *, refresh_token: str, now: datetime) -> None:
    row = await repository.get_refresh_token_by_hash(session, sha256_hex(refresh_token))
    if row is None:
        return  # logging out twice is not an error
    await repository.revoke_family(session, row.family_id, now)
    record_event(
        session,
        type="user.logged_out",
        resource_type="user",
        resource_id=row.user_id,
        actor=row.user_id,
    )


# --- authentication --------------------------------------------------------------------


async def authenticate_access_token(
    session: AsyncSession, *, token: str, codec: TokenCodec, now: datetime
) -> Principal:
    """The user behind a JWT. Role and active flag come from the database, so a
    demotion or deactivation applies to tokens already issued."""
    claims = codec.decode_access(token, now=now)
    user = await repository.get_user(session, str(claims["sub"]))
    if user is None or not user.is_active:
        raise Unauthorized("User is disabled or gone", code="invalid_token")
    return Principal(
        kind="user",
        user_id=user.id,
        role=user.role,
        permissions=role_permissions(user.role),
        username=user.username,
        expires_at=float(claims["exp"]),
    )


def looks_like_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


async def authenticate_api_key(
    session: AsyncSession, *, key: str, now: datetime
) -> tuple[Principal, bool]:
    """The principal behind an API key, and whether its last use is due to be
    recorded (see :func:`record_api_key_use`; at most once a minute).

    A user key carries its scopes narrowed to the owner's current role. An agent
    key carries the agent scope while its owner may still create agent keys
    (``agents:write``), and nothing after.
    """
    row = await repository.get_api_key_by_prefix(session, key[:API_KEY_LOOKUP_LENGTH])
    if row is None or not hmac.compare_digest(row.key_hash, sha256_hex(key)):
        raise Unauthorized("Invalid API key", code="invalid_api_key")
    if row.revoked_at is not None:
        raise Unauthorized("API key revoked", code="api_key_revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("API key expired", code="api_key_expired")
    owner = await repository.get_user(session, row.owner_id)
    if owner is None or not owner.is_active:
        raise Unauthorized("API key owner is disabled", code="invalid_api_key")
    touch = row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION
    scopes = frozenset(Permission(s) for s in row.scopes if s in Permission._value2member_map_)
    owner_perms = role_permissions(owner.role)
    if row.kind == "agent":
        active = Permission.AGENTS_WRITE in owner_perms
        principal = Principal(
            kind="agent",
            user_id=owner.id,
            role="agent",
            permissions=scopes & AGENT_KEY_PERMISSIONS if active else frozenset(),
            api_key_id=row.id,
            agent_id=row.agent_id,
            username=owner.username,
            expires_at=row.expires_at.timestamp() if row.expires_at else None,
        )
    else:
        principal = Principal(
            kind="user",
            user_id=owner.id,
            role=owner.role,
            permissions=scopes & owner_perms,
            api_key_id=row.id,
            username=owner.username,
            expires_at=row.expires_at.timestamp() if row.expires_at else None,
        )
    return principal, touch


async def record_api_key_use(session: AsyncSession, *, key_id: str, now: datetime) -> None:
    await repository.touch_api_key(session, key_id, now)


# --- API keys --------------------------------------------------------------------------


async def create_api_key(
    session: AsyncSession,
    *,
    principal: Principal,
    name: str,
    scopes: list[Permission] | None,
    expires_at: datetime | None,
    agent_id: str | None,
    now: datetime,
) -> tuple[ApiKey, str]:
    if principal.kind != "user":
        raise Forbidden("Agents cannot create API keys", code="forbidden")
    if expires_at is not None and expires_at <= now:
        raise Unprocessable("expires_at is in the past", code="invalid_expiry")
    if agent_id is not None:
        if not principal.can(Permission.AGENTS_WRITE):
            raise Forbidden(
                "Creating an agent key needs the agents:write permission",
                code="missing_permission",
                permission=Permission.AGENTS_WRITE.value,
            )
        agent = await agents_service.get_agent(session, agent_id=agent_id)
        if agent.owner_id != principal.user_id and not principal.can(Permission.AGENTS_OPERATE):
            raise Forbidden(
                "Only the agent's owner or an operator may create keys for it",
                code="not_owner",
                permission=Permission.AGENTS_OPERATE.value,
            )
        granted = sorted(p.value for p in AGENT_KEY_PERMISSIONS)
        kind = "agent"
    else:
        wanted = set(scopes) if scopes is not None else set(principal.permissions)
        extra = wanted - principal.permissions
        if extra:
            raise Forbidden(
                "A key cannot carry permissions its creator lacks: "
                + ", ".join(sorted(p.value for p in extra)),
                code="scope_exceeds_role",
            )
        granted = sorted(p.value for p in wanted)
        kind = "user"
    secret, prefix = new_api_key()
    row = ApiKey(
        id=new_id(),
        name=name,
        prefix=prefix,
        key_hash=sha256_hex(secret),
        kind=kind,
        owner_id=principal.user_id,
        agent_id=agent_id,
        scopes=granted,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    record_event(
        session,
        type="api_key.created",
        resource_type="api_key",
        resource_id=row.id,
        data={"name": name, "kind": kind, "agent_id": agent_id, "scopes": granted},
        actor=principal.id,
    )
    return row, secret


def _can_manage(principal: Principal, key: ApiKey) -> bool:
    return key.owner_id == principal.user_id or principal.can(Permission.API_KEYS_ADMIN)


async def list_api_keys(
    session: AsyncSession,
    *,
    principal: Principal,
    all_owners: bool,
    include_revoked: bool,
    agent_id: str | None,
    cursor: str | None,
    limit: int,
) -> Slice[ApiKey]:
    if all_owners and not principal.can(Permission.API_KEYS_ADMIN):
        raise Forbidden(
            "Listing every owner's keys needs api_keys:admin",
            code="missing_permission",
            permission=Permission.API_KEYS_ADMIN.value,
        )
    rows = await repository.list_api_keys(
        session,
        owner_id=None if all_owners else principal.user_id,
        agent_id=agent_id,
        include_revoked=include_revoked,
        after_id=_after_id(cursor),
        limit=limit + 1,
    )
    nxt = encode_cursor({"id": rows[limit - 1].id}) if len(rows) > limit else None
    return Slice[ApiKey](items=list(rows[:limit]), next_cursor=nxt)


async def get_api_key(session: AsyncSession, *, principal: Principal, key_id: str) -> ApiKey:
    row = await repository.get_api_key(session, key_id)
    if row is None or not _can_manage(principal, row):
        raise NotFound(f"API key {key_id} not found", code="api_key_not_found")
    return row


async def revoke_api_key(
    session: AsyncSession, *, principal: Principal, key_id: str, now: datetime
) -> ApiKey:
    row = await get_api_key(session, principal=principal, key_id=key_id)
    if row.revoked_at is None:
        row.revoked_at = now
        await session.flush()
        record_event(
            session,
            type="api_key.revoked",
            resource_type="api_key",
            resource_id=row.id,
            actor=principal.id,
        )
    return row


async def revoke_agent_keys(session: AsyncSession, *, agent_id: str, now: datetime) -> int:
    """Revoke every key bound to an agent (the agent is being deleted)."""
    count = await repository.revoke_keys_of_agent(session, agent_id, now)
    if count:
        record_event(
            session,
            type="api_key.revoked",
            resource_type="agent",
            resource_id=agent_id,
            data={"count": count, "reason": "agent deleted"},
            actor="system",
        )
    return count

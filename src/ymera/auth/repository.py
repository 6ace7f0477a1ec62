"""Every query on users, refresh tokens and API keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.models.auth import ApiKey, RefreshToken, User


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    stmt = select(User).where(User.username == username)
    return (await session.execute(stmt)).scalar_one_or_none()


async def count_users(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count(User.id)))).scalar_one())


async def count_active_admins(session: AsyncSession) -> int:
    """Locks the active admins' rows (PostgreSQL), so two concurrent demotions
    cannot both see the other admin and leave none."""
    stmt = select(User.id).where(User.role == "admin", User.is_active.is_(True)).with_for_update()
    return len((await session.execute(stmt)).scalars().all())


async def list_users(session: AsyncSession, *, after_id: str | None, limit: int) -> Sequence[User]:
    stmt = select(User).order_by(User.id).limit(limit)
    if after_id:
        stmt = stmt.where(User.id > after_id)
    return (await session.execute(stmt)).scalars().all()


async def get_refresh_token_by_hash(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    stmt = select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def revoke_family(session: AsyncSession, family_id: str, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_tokens(session: AsyncSession, user_id: str, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def get_api_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def get_api_key_by_prefix(session: AsyncSession, prefix: str) -> ApiKey | None:
    stmt = select(ApiKey).where(ApiKey.prefix == prefix)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_api_keys(
    session: AsyncSession,
    *,
    owner_id: str | None,
    agent_id: str | None,
    include_revoked: bool,
    after_id: str | None,
    limit: int,
) -> Sequence[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.id).limit(limit)
    if owner_id is not None:
        stmt = stmt.where(ApiKey.owner_id == owner_id)
    if agent_id is not None:
        stmt = stmt.where(ApiKey.agent_id == agent_id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    if after_id:
        stmt = stmt.where(ApiKey.id > after_id)
    return (await session.execute(stmt)).scalars().all()


async def touch_api_key(session: AsyncSession, key_id: str, now: datetime) -> None:
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


async def revoke_keys_of_agent(session: AsyncSession, agent_id: str, now: datetime) -> int:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.agent_id == agent_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)

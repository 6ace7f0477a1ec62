"""The bootstrap admin: created only when no user exists, with a random password
handed to the caller once."""

from __future__ import annotations

from sqlalchemy import delete, select

from tests.auth.conftest import started
from tests.fixtures.backends import Backend
from ymera.auth import repository, service
from ymera.auth.passwords import verify_password
from ymera.auth.permissions import Role
from ymera.db.database import Database
from ymera.models.auth import User


async def test_bootstrap_only_on_an_empty_database_with_a_random_password(
    backend: Backend,
) -> None:
    db = Database(backend.database_url)
    try:
        async with db.transaction() as session:
            first = await service.bootstrap_admin(session)
        assert first is not None
        username, password = first
        assert username == "admin"
        assert len(password) >= 20
        async with db.transaction() as session:
            assert await service.bootstrap_admin(session) is None
            admin = (await session.execute(select(User))).scalar_one()
        assert admin.role == Role.ADMIN.value
        assert admin.is_active
        assert verify_password(password, admin.password_hash)
        assert password not in admin.password_hash

        async with db.transaction() as session:  # a fresh database again
            await session.execute(delete(User))
        async with db.transaction() as session:
            second = await service.bootstrap_admin(session)
        assert second is not None
        assert second[1] != password
    finally:
        await db.dispose()


async def test_no_bootstrap_when_any_user_exists(backend: Backend) -> None:
    db = Database(backend.database_url)
    try:
        async with db.transaction() as session:
            await service.create_user(
                session, username="first", password="password-123456", role=Role.VIEWER
            )
        async with db.transaction() as session:
            assert await service.bootstrap_admin(session) is None
            names = (await session.execute(select(User.username))).scalars().all()
        assert names == ["first"]
    finally:
        await db.dispose()


async def test_app_start_reports_the_admin_once_and_it_can_log_in(backend: Backend) -> None:
    created: list[tuple[str, str]] = []
    settings = backend.settings()
    async with started(settings, on_admin_created=lambda u, p: created.append((u, p))) as h:
        assert len(created) == 1
        username, password = created[0]
        resp = await h.client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )
        assert resp.status_code == 200, resp.text
    async with started(settings, on_admin_created=lambda u, p: created.append((u, p))):
        pass
    assert len(created) == 1  # the second start found a user


async def test_bootstrap_can_be_switched_off(backend: Backend) -> None:
    created: list[tuple[str, str]] = []
    settings = backend.settings(auth={"bootstrap_admin": False})
    async with started(settings, on_admin_created=lambda u, p: created.append((u, p))) as h:
        assert await user_count(h.state.db) == 0
    assert created == []


async def user_count(db: Database) -> int:
    async with db.transaction(readonly=True) as session:
        return await repository.count_users(session)

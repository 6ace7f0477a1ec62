"""PostgreSQL pool: a connection is checked before use only after sitting idle;
a dead connection is replaced (found by the check, or by the failure of the one
unit of work that used it), never kept."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.fixtures.backends import Backend
from ymera.db.database import Database

# PostgreSQL's connection pool only (SQLite's connections are in-process files).
pytestmark = pytest.mark.parametrize("backend", ["postgresql-redis"], indirect=True)


@pytest.fixture
def pg_url(backend: Backend, empty_database_url: str) -> str:
    assert backend.db_kind == "postgresql"
    return empty_database_url


async def _backend_pid(db: Database) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _kill(db: Database, pid: int) -> None:
    admin = Database(db.url)
    try:
        async with admin.transaction() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await admin.dispose()


def _count_pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    dialect = db.engine.dialect
    real = dialect.do_ping

    def counting(dbapi_conn: object) -> bool:
        calls.append(1)
        return bool(real(dbapi_conn))

    monkeypatch.setattr(dialect, "do_ping", counting)
    return calls


async def test_a_connection_used_a_moment_ago_is_not_pinged(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(pg_url, ping_idle_seconds=60)
    pings = _count_pings(db, monkeypatch)
    try:
        first = await _backend_pid(db)
        for _ in range(5):
            assert await _backend_pid(db) == first  # the warm connection, reused
        assert pings == []
    finally:
        await db.dispose()


async def test_an_idle_dead_connection_is_replaced_before_use(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(pg_url, ping_idle_seconds=0)  # every reuse counts as idle
    pings = _count_pings(db, monkeypatch)
    try:
        pid = await _backend_pid(db)
        await _kill(db, pid)
        assert await _backend_pid(db) != pid  # no error: the check found it dead
        assert pings
    finally:
        await db.dispose()


async def test_a_recently_used_dead_connection_fails_once_then_is_replaced(
    pg_url: str,
) -> None:
    db = Database(pg_url, ping_idle_seconds=60)
    try:
        pid = await _backend_pid(db)
        await _kill(db, pid)
        with pytest.raises(DBAPIError) as failed:
            await _backend_pid(db)
        assert failed.value.connection_invalidated
        assert await _backend_pid(db) != pid
    finally:
        await db.dispose()

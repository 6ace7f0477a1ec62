"""Database.run_in_transaction runs work again when PostgreSQL picks it as a
deadlock's victim (or fails it for serialisation), and only then."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.db.database import Database


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _db_error(sqlstate: str) -> DBAPIError:
    return DBAPIError("UPDATE ...", {}, _Orig(sqlstate))


@pytest.fixture
async def db(empty_database_url: str) -> AsyncIterator[Database]:
    database = Database(empty_database_url)
    try:
        yield database
    finally:
        await database.dispose()


async def test_a_deadlock_victim_runs_again(db: Database) -> None:
    calls = 0

    async def work(session: AsyncSession) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise _db_error("40P01")
        return int((await session.execute(text("SELECT 7"))).scalar_one())

    assert await db.run_in_transaction(work) == 7
    assert calls == 2


async def test_other_errors_and_the_last_attempt_propagate(db: Database) -> None:
    calls = 0

    async def unique_violation(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        raise _db_error("23505")

    with pytest.raises(DBAPIError):
        await db.run_in_transaction(unique_violation)
    assert calls == 1

    calls = 0

    async def always_deadlocked(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        raise _db_error("40001")

    with pytest.raises(DBAPIError):
        await db.run_in_transaction(always_deadlocked, attempts=3)
    assert calls == 3

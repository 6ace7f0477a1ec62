"""SQLite calls on the event loop thread (the default): a lock held by another
connection (another process, a CLI command) is waited for with asynchronous
sleeps, never inside SQLite, so the loop keeps serving while it waits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.fixtures.waiting import wait_until
from ymera.db.database import Database
from ymera.db.sqlite_inline import OFFLOAD_ROWS, OFFLOAD_VALUES, InlineConnection


async def _table(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE t (x INTEGER)"))


async def _count(db: Database) -> int:
    async with db.transaction(readonly=True) as session:
        return int(await session.scalar(text("SELECT count(*) FROM t")) or 0)


async def test_connections_run_inline(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    try:
        async with db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.driver_connection, InlineConnection)
            assert raw.driver_connection._thread.ident is None  # no thread started
    finally:
        await db.dispose()


async def test_a_foreign_lock_is_waited_for_while_the_loop_keeps_running(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    db = Database(f"sqlite+aiosqlite:///{path}", sqlite_busy_timeout_ms=10_000)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await _table(db)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        async def write() -> None:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))

        beat = asyncio.create_task(ticker())
        writer = asyncio.create_task(write())
        start = ticks
        await wait_until(lambda: ticks - start >= 20, timeout=5, what="the loop to keep running")
        assert not writer.done()  # still waiting for the lock
        other.execute("COMMIT")
        await asyncio.wait_for(writer, 5)
        beat.cancel()
        assert await _count(db) == 1
    finally:
        other.close()
        await db.dispose()


async def test_the_wait_ends_at_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = Database(f"sqlite+aiosqlite:///{path}", sqlite_busy_timeout_ms=200)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await _table(db)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"):
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
        other.execute("ROLLBACK")
        # The database is usable again afterwards.
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (2)"))
        assert await _count(db) == 1
    finally:
        other.close()
        await db.dispose()


async def test_threaded_mode_still_works(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", sqlite_inline=False)
    try:
        await _table(db)
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
        assert await _count(db) == 1
        async with db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert not isinstance(raw.driver_connection, InlineConnection)
    finally:
        await db.dispose()


async def _thread_of_each_row(db: Database, rows: int, *, per_statement: int = 1) -> set[int]:
    """Insert ``rows`` rows with one executemany (``per_statement`` rows per
    statement); the ids of the threads SQLite computed them on (a SQL function
    records it)."""
    threads: set[int] = set()
    async with db.transaction() as session:
        conn = await session.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        assert isinstance(raw, InlineConnection)
        assert raw._connection is not None
        raw._connection.create_function("tid", 1, lambda x: threads.add(threading.get_ident()) or x)
        sql = "INSERT INTO t (x) VALUES " + ", ".join(["(tid(?))"] * per_statement)
        params = [tuple(range(i, i + per_statement)) for i in range(0, rows, per_statement)]
        await conn.exec_driver_sql(sql, params)
    return threads


async def test_big_statements_run_off_the_loop_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    try:
        await _table(db)
        loop_thread = threading.get_ident()
        assert await _thread_of_each_row(db, OFFLOAD_ROWS - 1) == {loop_thread}
        offloaded = await _thread_of_each_row(db, OFFLOAD_ROWS)
        assert len(offloaded) == 1
        assert loop_thread not in offloaded
        assert await _count(db) == 2 * OFFLOAD_ROWS - 1  # both committed
    finally:
        await db.dispose()


async def test_few_statements_of_many_rows_run_off_the_loop_thread(tmp_path: Path) -> None:
    """An executemany of statements of many rows each (ymera.db.driver's batches)
    counts by the values it binds, not by its statements."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    try:
        await _table(db)
        loop_thread = threading.get_ident()
        per = OFFLOAD_VALUES // 4
        small = await _thread_of_each_row(db, OFFLOAD_VALUES // 2, per_statement=per)
        assert small == {loop_thread}
        big = await _thread_of_each_row(db, OFFLOAD_VALUES, per_statement=per)
        assert len(big) == 1
        assert loop_thread not in big
        assert await _count(db) == OFFLOAD_VALUES * 3 // 2
    finally:
        await db.dispose()


async def test_cancelling_an_offloaded_statement_leaves_the_connection_usable(
    tmp_path: Path,
) -> None:
    """The caller is cancelled while its statement runs in the thread: the
    statement finishes there first, the transaction rolls back, and the next unit
    of work on the same connection works."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    started = asyncio.Event()

    async def big_insert() -> None:
        async with db.transaction() as session:
            conn = await session.connection()
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw._connection is not None
            raw._connection.create_function("mark", 1, lambda x: started.set() or x)
            rows = [(i,) for i in range(200_000)]
            await conn.exec_driver_sql("INSERT INTO t (x) VALUES (mark(?))", rows)

    try:
        await _table(db)
        job = asyncio.create_task(big_insert())
        await wait_until(started.is_set, timeout=10)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert await _count(db) == 0
        await _thread_of_each_row(db, 3)
        assert await _count(db) == 3
    finally:
        await db.dispose()

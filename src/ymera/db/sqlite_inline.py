"""SQLite calls on the event loop's own thread.

aiosqlite runs every call (execute, fetch, commit, close a cursor...) on a
thread per connection and hands the result back through the event loop: about
50-100 us of CPU and two context switches per call, and a small transaction
makes ten such calls. With WAL and ``synchronous=NORMAL`` a commit does not
fsync and the statements YMERA runs take microseconds, so running them directly
on the loop's thread is far cheaper than the hand-off; this connection does
that, keeping aiosqlite's interface (SQLAlchemy's aiosqlite dialect drives it
unchanged, through its ``async_creator_fn`` hook).

The one call that could block for long is waiting for a lock another *process*
holds (writers inside this process already queue on an asyncio lock). So the
connection's own busy timeout is 0, and a call that finds the database locked
is retried here with asynchronous sleeps until ``busy_timeout`` runs out:
retrying ``BEGIN``, a read or ``COMMIT`` after ``SQLITE_BUSY`` is safe.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Generator
from typing import Any

import aiosqlite

_BUSY_MESSAGES = ("database is locked", "database is busy", "database table is locked")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return str(exc).lower().startswith(_BUSY_MESSAGES)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run on the calling (event loop) thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], busy_timeout: float) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._busy_timeout = busy_timeout

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        deadline: float | None = None
        pause = 0.001
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._busy_timeout
                if now >= deadline:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            connection = self._connector()
            connection.execute("PRAGMA busy_timeout=0")
            self._connection = connection
        return self

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._connect().__await__()

    def stop(self) -> asyncio.Future[Any] | None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        return None

    async def close(self) -> None:
        self.stop()


def inline_connect(busy_timeout: float) -> Callable[..., InlineConnection]:
    """A creator for ``connect_args={"async_creator_fn": ...}``."""

    def connect(database: str, **kwargs: Any) -> InlineConnection:
        options = {**kwargs, "check_same_thread": False}

        def connector() -> sqlite3.Connection:
            connection: sqlite3.Connection = sqlite3.connect(database, **options)
            return connection

        return InlineConnection(connector, busy_timeout)

    return connect

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

Big statements are the exception: an ``executemany`` of many rows or values
(a group commit's tasks, events, assignments and reports, which
``ymera.db.driver`` sends as statements of many rows each), a query with many
parameters (the report rows a batch locks) and the fetch of its rows, and the
``COMMIT`` of a transaction that ran one, go to a thread of the connection's own. SQLite
releases the GIL while it works, so the event loop goes on parsing requests
and frames on one core while SQLite writes rows on the other; the hand-off
(tens of microseconds) is nothing next to a few hundred rows. Measured with the
dispatch benchmark (batches): the server's SQLite work was about 40% of its
CPU, all of it on the loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiosqlite

_BUSY_MESSAGES = ("database is locked", "database is busy", "database table is locked")
# A query with at least this many parameters, and an executemany of at least
# this many rows or binding at least OFFLOAD_VALUES values (statements of many
# rows each, ymera.db.driver), run off the event loop's thread.
OFFLOAD_ROWS = 64
OFFLOAD_VALUES = 512


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return str(exc).lower().startswith(_BUSY_MESSAGES)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run on the calling (event loop) thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], busy_timeout: float) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._busy_timeout = busy_timeout
        self._offloader: ThreadPoolExecutor | None = None
        self._heavy = False  # the open transaction ran a big statement
        self._heavy_query = False  # the last call was a big query: fetch its rows off the loop

    def _offload(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
        """Whether this call runs on the connection's thread (see the module doc)."""
        name = getattr(fn, "__name__", "")
        fetch, self._heavy_query = self._heavy_query, False
        if (
            name == "executemany"
            and len(args) > 1
            and (_row_count(args[1]) >= OFFLOAD_ROWS or _value_count(args[1]) >= OFFLOAD_VALUES)
        ):
            self._heavy = True
            return True
        if name == "execute" and len(args) > 1 and _row_count(args[1]) >= OFFLOAD_ROWS:
            # A query over many keys (report rows locked by id): its rows are
            # stepped through by the fetch that follows, which goes too.
            self._heavy_query = True
            return True
        if name in ("fetchall", "fetchmany"):
            return fetch
        if name in ("commit", "rollback"):
            heavy, self._heavy = self._heavy, False
            return heavy and name == "commit"
        return False

    async def _run_offloaded(self, call: Callable[[], Any]) -> Any:
        if self._offloader is None:
            self._offloader = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        future = asyncio.get_running_loop().run_in_executor(self._offloader, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The statement goes on in the thread: nothing else may use the
            # connection until it ends.
            await asyncio.wait({future})
            raise

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        offload = self._offload(fn, args)
        deadline: float | None = None
        pause = 0.001
        while True:
            try:
                if offload:
                    return await self._run_offloaded(functools.partial(fn, *args, **kwargs))
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
        if self._offloader is not None:
            self._offloader.shutdown(wait=True)  # a statement in flight ends first
            self._offloader = None
        if self._connection is not None:
            if self._connection.in_transaction:
                # close() alone may leave the connection open, and its write lock
                # held, while a statement object is still referenced (a cancelled
                # call's cursor, say): end the transaction first.
                with contextlib.suppress(sqlite3.Error):
                    self._connection.rollback()
            self._connection.close()
            self._connection = None
        return None

    async def close(self) -> None:
        self.stop()


def _value_count(params: Any) -> int:
    """The values an executemany binds (rows x their width), 0 when unknown."""
    try:
        return len(params) * len(params[0]) if len(params) else 0
    except TypeError:  # an iterator, or rows of unknown length: keep it inline
        return 0


def _row_count(params: Any) -> int:
    try:
        return len(params)
    except TypeError:  # an iterator: count unknown, keep it inline
        return 0


def inline_connect(busy_timeout: float) -> Callable[..., InlineConnection]:
    """A creator for ``connect_args={"async_creator_fn": ...}``."""

    def connect(database: str, **kwargs: Any) -> InlineConnection:
        options = {**kwargs, "check_same_thread": False}

        def connector() -> sqlite3.Connection:
            connection: sqlite3.Connection = sqlite3.connect(database, **options)
            return connection

        return InlineConnection(connector, busy_timeout)

    return connect

"""Engines, sessions and the unit of work.

SQLite: WAL, a busy timeout and foreign keys on every connection. Writers open
their transaction with ``BEGIN IMMEDIATE`` so two writers never deadlock on a
lock upgrade; readers use a second engine with deferred transactions so they
never wait for a writer (WAL readers see a snapshot).

SQLite has one writer at a time and its busy handler waits by sleeping in
growing steps; so within a process, write transactions queue on an asyncio lock
taken when the transaction really begins (its first statement) and released at
commit/rollback. The busy timeout still covers other processes.

After a commit of a session that recorded events, :attr:`Database.outbox_signal`
is set so the outbox relay publishes them at once.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.util import await_only
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from ymera.db.sqlite_inline import inline_connect
from ymera.kit import jsonx

T = TypeVar("T")

# PostgreSQL's deadlock_detected and serialization_failure.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def _is_retryable_conflict(exc: BaseException) -> bool:
    return (
        isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
    )


_EMPTY_JSON: dict[str, Any] = {"[]": list, "{}": dict, "null": lambda: None}


def json_loads(text: str | bytes) -> Any:
    """JSON columns, read: with a shortcut for the empty lists and objects most
    of them hold."""
    empty = _EMPTY_JSON.get(text) if isinstance(text, str) else None
    return empty() if empty is not None else jsonx.loads(text)


def json_dumps(value: Any) -> str:
    """JSON columns, written (compact, by orjson)."""
    if not value and isinstance(value, (list, dict)):
        return "[]" if isinstance(value, list) else "{}"
    return jsonx.dumps(value)


SQLITE_POOL_SIZE = 32  # SQLite connections each engine keeps open
OUTBOX_FLAG = "ymera_outbox_dirty"
EVENT_TYPES = "ymera_event_types"  # the types of the events a unit of work recorded
PUBLISH_ROWS = "ymera_publish_rows"  # events sequenced in the transaction (SQLite)
NUMBERED_FROM = "ymera_numbered_from"  # the first seq the open transaction took
_HOLDS_LOCK = "ymera_holds_write_lock"
DB_KEY = "ymera_db"


def _sqlite_engine(
    url: str,
    *,
    write_lock: asyncio.Lock | None,
    busy_timeout_ms: int,
    echo: bool,
    inline: bool,
) -> AsyncEngine:
    connect_args: dict[str, Any] = {"timeout": busy_timeout_ms / 1000, "isolation_level": None}
    if inline:
        # Calls on the event loop thread; waits for other processes' locks are
        # retried asynchronously (see sqlite_inline), never inside SQLite.
        connect_args["async_creator_fn"] = inline_connect(busy_timeout_ms / 1000)
    engine = create_async_engine(
        url,
        echo=echo,
        connect_args=connect_args,
        pool_pre_ping=False,
        # Kept open: under load more than a handful of units of work overlap (readers,
        # writers waiting their turn), and an overflow connection is opened, set up
        # and closed again for each of them.
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=SQLITE_POOL_SIZE,
        json_serializer=json_dumps,
        json_deserializer=json_loads,
    )
    begin_sql = "BEGIN IMMEDIATE" if write_lock is not None else "BEGIN"
    sqlite_busy_ms = 0 if inline else int(busy_timeout_ms)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={sqlite_busy_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if write_lock is not None and not conn.info.get(_HOLDS_LOCK):
            # Runs inside SQLAlchemy's greenlet, so it may wait on the event loop.
            await_only(write_lock.acquire())
            conn.info[_HOLDS_LOCK] = True
        try:
            conn.exec_driver_sql(begin_sql)
        except BaseException:
            _release(conn)
            raise

    def _release(conn: Any) -> None:
        if write_lock is not None and conn.info.pop(_HOLDS_LOCK, False):
            write_lock.release()

    # The lock is released when the connection goes back to the pool, which is
    # after SQLite has finished the COMMIT/ROLLBACK (releasing at the engine's
    # "commit" event would let the next writer's BEGIN IMMEDIATE race the COMMIT
    # and fall into SQLite's sleeping busy handler).

    # Also when a connection is invalidated mid-transaction.
    def _release_record(_dbapi_conn: Any, record: Any, *_: Any) -> None:
        _release(record)

    event.listen(engine.sync_engine, "checkin", _release_record)
    event.listen(engine.sync_engine, "invalidate", _release_record)
    return engine


_RETURNED_AT = "ymera_returned_at"  # when the connection was last given back to the pool


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Check a pooled connection before use only when it has sat idle for
    ``idle_seconds`` or more (SQLAlchemy's ``pool_pre_ping`` checks every checkout:
    with asyncpg that is BEGIN, an empty query and ROLLBACK, three round trips per
    unit of work, about 6% of the server's CPU under load). A dead connection found
    so invalidates the whole pool, as ``pool_pre_ping`` does; one that died within
    the last ``idle_seconds`` fails its unit of work, and that failure (a
    disconnect) invalidates the pool, so the next unit of work reconnects."""
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _check(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)
        if returned is None or time.monotonic() - returned < idle_seconds:
            return  # new (just connected), or in use a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_conn, None):
                raise InvalidatePoolError() from exc  # the pool reconnects and retries
            raise


class Database:
    """Owns the engines and hands out sessions / units of work."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int = 10,
        max_overflow: int = 20,
        sqlite_busy_timeout_ms: int = 30_000,
        sqlite_inline: bool = True,
        ping_idle_seconds: float = 1.0,
    ) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(
                url,
                write_lock=asyncio.Lock(),
                busy_timeout_ms=sqlite_busy_timeout_ms,
                echo=echo,
                inline=sqlite_inline,
            )
            self.read_engine = _sqlite_engine(
                url,
                write_lock=None,
                busy_timeout_ms=sqlite_busy_timeout_ms,
                echo=echo,
                inline=sqlite_inline,
            )
        else:
            self.engine = create_async_engine(
                url,
                echo=echo,
                pool_size=pool_size,
                max_overflow=max_overflow,
                # The most recently used connection first: under light load one or
                # two connections stay warm and the rest idle (and are checked when
                # next used, see _ping_when_idle).
                pool_use_lifo=True,
                json_serializer=json_dumps,
                json_deserializer=json_loads,
            )
            _ping_when_idle(self.engine, ping_idle_seconds)
            self.read_engine = self.engine
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self.outbox_signal = asyncio.Event()
        # Events sequenced inside their own transaction (SQLite), in commit order,
        # waiting for the relay to publish them.
        self.publish_queue: collections.deque[list[dict[str, Any]]] = collections.deque()
        # The first seq of each transaction of this process that numbered events
        # and has not ended: the relay publishes nothing numbered after it (a
        # later transaction's commit can reach Python first).
        self.numbering: set[int] = set()
        self._commit_listeners: list[Callable[[], None]] = []
        self._event_listeners: list[Callable[[set[str], dict[Any, Any]], None]] = []

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def session(self, *, readonly: bool = False) -> AsyncSession:
        maker = self._read_sessions if readonly else self._sessions
        session = maker()
        session.info[DB_KEY] = self
        return session

    @asynccontextmanager
    async def transaction(
        self,
        *,
        readonly: bool = False,
        commit_on: tuple[type[BaseException], ...] = (),
    ) -> AsyncIterator[AsyncSession]:
        """A unit of work: commit on success, roll back on error.

        Exceptions listed in ``commit_on`` still commit before propagating (for
        failures whose side effects must stick, such as revoking a token family).
        """
        async with self.session(readonly=readonly) as session:
            try:
                yield session
            except commit_on:
                await session.commit()
                raise
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    async def run_in_transaction(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, attempts: int = 3
    ) -> T:
        """``work`` in a transaction of its own, run again (up to ``attempts``
        times) when PostgreSQL picks it as a deadlock's victim or fails it for
        serialisation: such a transaction did nothing and may simply run again.
        For work that locks rows in an order other writers cannot share."""
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            retry=retry_if_exception(_is_retryable_conflict),
            reraise=True,
        ):
            with attempt:
                async with self.transaction() as session:
                    return await work(session)
        raise AssertionError("unreachable")  # pragma: no cover

    def notify_outbox(self) -> None:
        self.outbox_signal.set()
        for listener in self._commit_listeners:
            listener()

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        self._commit_listeners.append(listener)

    def add_event_listener(self, listener: Callable[[set[str], dict[Any, Any]], None]) -> None:
        """Call ``listener`` with the event types and the session's ``info`` of every
        commit that recorded events (at once, on this process; before the relay
        publishes them)."""
        self._event_listeners.append(listener)

    def notify_events(self, types: set[str], info: dict[Any, Any]) -> None:
        for listener in self._event_listeners:
            listener(types, info)

    async def ping(self) -> None:
        async with self.read_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


# Writes a unit of work defers to its commit (new tasks, report rows, agent load,
# metrics, events), run in a fixed order. The events come last: they take the
# event sequencer's row lock, held until COMMIT, and a transaction holding it
# must wait for no other lock (or two such transactions could deadlock).
CommitWriter = Callable[[Session], None]
_COMMIT_WRITERS: list[tuple[int, str, CommitWriter]] = []
LAST = 1000


def at_commit(order: int) -> Callable[[CommitWriter], CommitWriter]:
    """Register a deferred writer, run before every commit in ``order`` (lowest first)."""

    def register(writer: CommitWriter) -> CommitWriter:
        _COMMIT_WRITERS.append((order, writer.__qualname__, writer))
        _COMMIT_WRITERS.sort(key=lambda entry: (entry[0], entry[1]))
        return writer

    return register


@event.listens_for(Session, "before_commit")
def _run_commit_writers(session: Session) -> None:
    for _, _, writer in _COMMIT_WRITERS:
        writer(session)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    types = session.info.pop(EVENT_TYPES, None)
    sequenced = session.info.pop(PUBLISH_ROWS, None)
    numbered_from = session.info.pop(NUMBERED_FROM, None)
    if session.info.pop(OUTBOX_FLAG, False):
        db = session.info.get(DB_KEY)
        if isinstance(db, Database):
            if sequenced:
                db.publish_queue.append(sequenced)
            db.numbering.discard(numbered_from)
            if types:
                db.notify_events(types, session.info)
            db.notify_outbox()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(OUTBOX_FLAG, None)
    session.info.pop(EVENT_TYPES, None)
    session.info.pop(PUBLISH_ROWS, None)
    numbered_from = session.info.pop(NUMBERED_FROM, None)
    db = session.info.get(DB_KEY)
    if numbered_from is not None and isinstance(db, Database):
        db.numbering.discard(numbered_from)
        if db.publish_queue:
            db.notify_outbox()  # what it held back may go now

"""Engines, sessions and the unit of work.

SQLite: WAL, a busy timeout and foreign keys on every connection. Writers open
their transaction with ``BEGIN IMMEDIATE`` so two writers never deadlock on a
lock upgrade; readers use a second engine with deferred transactions so they
never wait for a writer (WAL readers see a snapshot).

After a commit of a session that recorded events, :attr:`Database.outbox_signal`
is set so the outbox relay publishes them at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

OUTBOX_FLAG = "ymera_outbox_dirty"
DB_KEY = "ymera_db"


def _sqlite_engine(url: str, *, immediate: bool, busy_timeout_ms: int, echo: bool) -> AsyncEngine:
    engine = create_async_engine(
        url,
        echo=echo,
        connect_args={"timeout": busy_timeout_ms / 1000, "isolation_level": None},
        pool_pre_ping=False,
    )
    begin_sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin_sql)

    return engine


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
    ) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(
                url, immediate=True, busy_timeout_ms=sqlite_busy_timeout_ms, echo=echo
            )
            self.read_engine = _sqlite_engine(
                url, immediate=False, busy_timeout_ms=sqlite_busy_timeout_ms, echo=echo
            )
        else:
            self.engine = create_async_engine(
                url,
                echo=echo,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_pre_ping=True,
            )
            self.read_engine = self.engine
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self.outbox_signal = asyncio.Event()
        self._commit_listeners: list[Callable[[], None]] = []

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def session(self, *, readonly: bool = False) -> AsyncSession:
        maker = self._read_sessions if readonly else self._sessions
        session = maker()
        session.info[DB_KEY] = self
        return session

    @asynccontextmanager
    async def transaction(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """A unit of work: commit on success, roll back on error."""
        async with self.session(readonly=readonly) as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    def notify_outbox(self) -> None:
        self.outbox_signal.set()
        for listener in self._commit_listeners:
            listener()

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        self._commit_listeners.append(listener)

    async def ping(self) -> None:
        async with self.read_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(OUTBOX_FLAG, False):
        db = session.info.get(DB_KEY)
        if isinstance(db, Database):
            db.notify_outbox()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(OUTBOX_FLAG, None)

"""Alembic environment. Runs on a connection handed in by ymera.db.migrate, or
opens its own async engine when called from the alembic command line."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import ymera.models  # noqa: F401  (registers every table)
from ymera.db.base import Base
from ymera.db.migrate import include_object

config = context.config
target_metadata = Base.metadata

# Any constant works; every replica uses the same one so only one migrates at a time.
_PG_MIGRATION_LOCK = 7_236_512_001


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Switch SQLite's foreign keys on or off for this connection (outside any
    transaction: inside one the pragma does nothing), on the driver's connection
    so that no transaction begins."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cursor.close()


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite and not connection.in_transaction():
        # Batch mode copies a table and drops the old one; with foreign keys on,
        # dropping it would delete (ON DELETE CASCADE) the rows that refer to it.
        _sqlite_foreign_keys(connection, on=False)
        try:
            _migrate(connection)
        finally:
            _sqlite_foreign_keys(connection, on=True)
        return
    _migrate(connection)


def _migrate(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection: Any = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()

"""Statements the task engine runs thousands of times a second, at the driver level.

SQLAlchemy Core spends more time per row on an ``executemany`` (building the
parameter dict, running each column's bind processor) than SQLite spends
storing the row: about 24 us against 9 us for a new task, measured on this
project's machines. The few statements on the dispatch hot path (insert tasks
and events, assign, save agents' reports, lock report rows) are therefore
written here as SQL text with positional parameters and executed through
``exec_driver_sql`` on the session's own connection (same transaction, same
pool, no compilation, no per-value processing); their values are converted to
what the driver stores once, here, in the same format the ORM's types use, so
rows written either way read back the same (a test pins that).

Everything else keeps using the ORM and Core.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from ymera.db.database import json_dumps, json_loads


@dataclass(frozen=True)
class Values:
    """Conversions between Python values and what one dialect's driver takes
    and gives for YMERA's column types."""

    dialect: str
    time: Callable[[datetime | None], Any]  # UTCDateTime, written
    read_time: Callable[[Any], datetime | None]  # UTCDateTime, read
    json: Callable[[Any], str | None]  # JSONType, written (None stays SQL NULL)
    read_json: Callable[[Any], Any]  # JSONType, read


def _sqlite_time(value: datetime | None) -> str | None:
    # UTCDateTime's SQLite format: naive UTC, "YYYY-MM-DD HH:MM:SS.ffffff".
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_read_time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _pg_time(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value


def _pg_read_time(value: Any) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _write_json(value: Any) -> str | None:
    return None if value is None else json_dumps(value)


def _sqlite_read_json(value: Any) -> Any:
    return None if value is None else json_loads(value)


def _pg_read_json(value: Any) -> Any:
    # The asyncpg dialect's codec has decoded it already (with json_loads).
    return json.loads(value) if isinstance(value, str) else value


_SQLITE = Values("sqlite", _sqlite_time, _sqlite_read_time, _write_json, _sqlite_read_json)
_POSTGRESQL = Values("postgresql", _pg_time, _pg_read_time, _write_json, _pg_read_json)


def values_for(dialect: str) -> Values:
    return _SQLITE if dialect == "sqlite" else _POSTGRESQL


@functools.lru_cache(maxsize=256)
def render(template: str, dialect: str) -> str:
    """The SQL of ``template`` (``?`` placeholders) in the dialect's parameter
    style: ``?`` for SQLite, ``$1, $2, ...`` for asyncpg."""
    if dialect == "sqlite":
        return template
    numbers = itertools.count(1)
    return "".join(
        part if i == 0 else f"${next(numbers)}{part}" for i, part in enumerate(template.split("?"))
    )


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


# SQL text built from this project's own table and column names (never input).


def insert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    return f"INSERT INTO {table} ({names}) VALUES ({placeholders(len(columns))})"  # noqa: S608


def update_sql(table: str, columns: Sequence[str], key: str = "id") -> str:
    sets = ", ".join(f"{column} = ?" for column in columns)
    return f"UPDATE {table} SET {sets} WHERE {key} = ?"  # noqa: S608


def select_by_keys_sql(
    dialect: str, table: str, columns: Sequence[str], count: int, *, lock: bool, key: str = "id"
) -> str:
    """Rows whose ``key`` is one of ``count`` values, in key order; ``lock``: FOR
    UPDATE on PostgreSQL (SQLite's writer already holds the database). Parameters:
    the values (SQLite), or one list of them (PostgreSQL, ``= ANY``)."""
    head = f"SELECT {', '.join(columns)} FROM {table} WHERE {key}"  # noqa: S608
    if dialect == "sqlite":
        return f"{head} IN ({placeholders(count)}) ORDER BY {key}"
    return f"{head} = ANY(?) ORDER BY {key}" + (" FOR UPDATE" if lock else "")


def keys_param(dialect: str, keys: Sequence[Any]) -> tuple[Any, ...]:
    """The parameters of :func:`select_by_keys_sql` for ``keys``."""
    return tuple(keys) if dialect == "sqlite" else (list(keys),)


async def execute_many(
    connection: AsyncConnection, template: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Run ``template`` once per row, as one executemany."""
    if rows:
        await connection.exec_driver_sql(render(template, connection.dialect.name), list(rows))


def execute_many_sync(
    connection: Connection, template: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """:func:`execute_many` on a sync connection (in a session's before-commit hook)."""
    if rows:
        connection.exec_driver_sql(render(template, connection.dialect.name), list(rows))


async def fetch(
    connection: AsyncConnection, template: str, params: tuple[Any, ...]
) -> Sequence[Any]:
    """Rows of a query, as the driver returns them (convert with :class:`Values`)."""
    result = await connection.exec_driver_sql(render(template, connection.dialect.name), params)
    return result.all()

"""Statements the task engine runs thousands of times a second, at the driver level.

SQLAlchemy Core spends more time per row on an ``executemany`` (building the
parameter dict, running each column's bind processor) than SQLite spends
storing the row: about 24 us against 9 us for a new task, measured on this
project's machines. The few statements on the dispatch hot path (insert tasks
and events, assign, save agents' reports, lock report rows) are therefore
written here as SQL text with positional parameters and executed on the
session's own connection (same transaction, same pool, no compilation, no
per-value processing); their values are converted to what the driver stores
once, here, in the same format the ORM's types use, so rows written either way
read back the same (a test pins that).

SQLite runs them through ``exec_driver_sql``. On PostgreSQL they go to the
asyncpg connection itself (inside the transaction SQLAlchemy holds on it): even
``exec_driver_sql`` cost about 100 us of CPU per statement against 25 us for
asyncpg alone (its cursor emulation asks for each statement's attributes and
builds a result), and the writer runs a dozen such statements per commit.
Errors are raised as SQLAlchemy's (``IntegrityError``, ...), as through
``exec_driver_sql``.

Everything else keeps using the ORM and Core.
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import await_only

from ymera.db.database import json_dumps, json_loads

T = TypeVar("T")


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


# Row-at-a-time statements built below, with their shape: on PostgreSQL an
# executemany of one runs as a single statement over arrays instead (see
# _array_sql).
_SHAPES: dict[str, tuple[str, str, tuple[str, ...], str | None]] = {}


def insert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    sql = f"INSERT INTO {table} ({names}) VALUES ({placeholders(len(columns))})"  # noqa: S608
    _SHAPES[sql] = ("insert", table, tuple(columns), None)
    return sql


def update_sql(table: str, columns: Sequence[str], key: str = "id") -> str:
    sets = ", ".join(f"{column} = ?" for column in columns)
    sql = f"UPDATE {table} SET {sets} WHERE {key} = ?"  # noqa: S608
    _SHAPES[sql] = ("update", table, tuple(columns), key)
    return sql


# SQLite: a batch of rows runs as statements of SQLITE_ROWS rows each (one
# multi-row VALUES: one bind and one step per statement, where an executemany
# binds, steps and resets each row, taking the GIL back after every step), the
# rest row by row. Measured in the dispatch benchmark (SQLite, batches of
# 20,000 tasks): the claims' UPDATEs cost the connection's thread 0.51 s of CPU
# and 1.09 s of wall time row by row, 0.32 s and 0.72 s in statements of 32
# rows. Fewer rows per statement when they are wide: a statement binds at most
# 999 values (SQLite's limit before 3.32). UPDATE ... FROM needs SQLite 3.33.
SQLITE_ROWS = 32
_SQLITE_MAX_VALUES = 999
_SQLITE_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


def _sqlite_rows_per_statement(template: str) -> int:
    shape = _SHAPES.get(template)
    if shape is None or (shape[0] == "update" and not _SQLITE_UPDATE_FROM):
        return 1
    width = len(shape[2]) + (shape[3] is not None)
    return max(1, min(SQLITE_ROWS, _SQLITE_MAX_VALUES // width))


@functools.lru_cache(maxsize=64)
def _sqlite_rows_sql(template: str, count: int) -> str:
    """SQLite: ``template`` (from :func:`insert_sql` or :func:`update_sql`) as one
    statement over ``count`` rows (parameters: the rows' values, row after row)."""
    kind, table, columns, key = _SHAPES[template]
    width = len(columns) + (key is not None)
    values = ", ".join([f"({placeholders(width)})"] * count)
    if kind == "insert":
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"  # noqa: S608
    sets = ", ".join(f"{name} = v.column{i}" for i, name in enumerate(columns, 1))
    return (
        f"UPDATE {table} SET {sets} FROM (VALUES {values}) AS v"  # noqa: S608
        f" WHERE {table}.{key} = v.column{width}"
    )


def _repeats_a_key(template: str, rows: Sequence[tuple[Any, ...]]) -> bool:
    """An update naming a row twice: one statement joining the rows (UPDATE ...
    FROM) would apply only one of its changes; row by row applies each in order."""
    shape = _SHAPES.get(template)
    return shape is not None and shape[0] == "update" and len({r[-1] for r in rows}) != len(rows)


def _sqlite_statements(
    template: str, rows: Sequence[tuple[Any, ...]]
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """SQLite: (statement, executemany parameters) pairs that run ``template``
    over ``rows``: statements of several rows each where it can, then the rest
    row by row."""
    per = _sqlite_rows_per_statement(template)
    count = len(rows) // per * per
    if per == 1 or not count or _repeats_a_key(template, rows):
        return [(template, list(rows))]
    sql = _sqlite_rows_sql(template, per)
    chunks = [tuple(itertools.chain.from_iterable(rows[i : i + per])) for i in range(0, count, per)]
    statements = [(sql, chunks)]
    if count < len(rows):
        statements.append((template, list(rows[count:])))
    return statements


def _array_type(table: str, column: str) -> tuple[str, str]:
    """The PostgreSQL array type a column's values are sent in, and the cast back
    to the column's type. Strings go as ``text[]`` (a cast to ``varchar(n)`` would
    cut a value that is too long instead of failing; assigning text fails), JSON
    as its text (the values are serialised already)."""
    from sqlalchemy.dialects import postgresql

    from ymera.db.base import Base

    dialect = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
    name = Base.metadata.tables[table].c[column].type.compile(dialect=dialect)
    if name in ("JSON", "JSONB"):
        return "text[]", f"::{name.lower()}"
    if name.startswith(("VARCHAR", "TEXT", "CHAR")):
        return "text[]", ""
    return f"{name}[]", ""


@functools.lru_cache(maxsize=512)
def _array_sql(
    template: str, scalars: frozenset[int] = frozenset(), joined: frozenset[int] = frozenset()
) -> str | None:
    """PostgreSQL: the statement ``template`` (from :func:`insert_sql` or
    :func:`update_sql`) as one statement over arrays of its parameters, one array
    per column (``unnest``): one statement for the whole batch instead of one per
    row (asyncpg's executemany binds and executes each row), about half the
    client's CPU and far less of the server's. Parameters: the columns
    (:func:`_columns`); a column whose index is in ``scalars`` is sent as one
    value for every row, one in ``joined`` as one string split by the server
    (see :func:`_batch_params`)."""
    shape = _SHAPES.get(template)
    if shape is None:
        return None
    kind, table, columns, key = shape
    names = [*columns, key] if key is not None else list(columns)
    types = _param_types(template)

    def array(i: int) -> str:
        if i not in joined:
            return f"${i + 1}::{types[i][0]}"
        split = text_array_sql(f"${i + 1}")
        return split if types[i][0] == "text[]" else f"{split}::{types[i][0]}"

    arrays = [i for i in range(len(names)) if i not in scalars]
    cols = ", ".join(array(i) for i in arrays)
    aliases = ", ".join(f"c{i}" for i in arrays)
    source = f"unnest({cols}) AS u({aliases})"

    def value(i: int) -> str:
        if i in scalars:
            return f"${i + 1}::{types[i][0][:-2]}{types[i][1]}"
        return f"u.c{i}{types[i][1]}"

    if kind == "insert":
        picks = ", ".join(value(i) for i in range(len(names)))
        return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {picks} FROM {source}"  # noqa: S608
    sets = ", ".join(f"{name} = {value(i)}" for i, name in enumerate(columns))
    last = len(columns)
    # "= ANY" of the keys too: without it the planner joins a large batch by
    # scanning the whole table (it cannot see that each key matches one row).
    keys = f"{table}.{key} = ANY({array(last)})"
    return f"UPDATE {table} SET {sets} FROM {source} WHERE {table}.{key} = u.c{last} AND {keys}"  # noqa: S608


@functools.lru_cache(maxsize=512)
def _param_types(template: str) -> tuple[tuple[str, str], ...]:
    """:func:`_array_type` of each parameter of an array statement's template."""
    _, table, columns, key = _SHAPES[template]
    names = [*columns, key] if key is not None else list(columns)
    return tuple(_array_type(table, name) for name in names)


# Batches at least this large send a column whose rows all hold the same value
# (a batch's shared instants, its NULLs, ...) as one value instead of an array:
# asyncpg encodes each array element (about 0.4 us for a string, 0.8 us for a
# timestamp on this machine). Smaller batches keep one statement shape (each
# shape is one more prepared statement).
SCALAR_MIN_ROWS = 16

# A column of strings goes as one string, its values separated by TEXT_SEPARATOR
# and NULLs written as TEXT_NULL, that the server splits (string_to_array): the
# join is one C call, where asyncpg encodes each element of a text[] (with two
# abstract-class checks each). Measured with asyncpg alone (800 ids per column):
# 81 ns of the client's CPU per value against 523, the server's 188 against 202.
# A column holding either character in a value goes as an array. Instants go the
# same way, as ISO 8601 text (each distinct instant formatted once) that the
# server casts to timestamptz[].
TEXT_SEPARATOR = "\x1f"  # ASCII unit separator
TEXT_NULL = "\x1e"  # ASCII record separator


def text_array_sql(param: str) -> str:
    """SQL splitting parameter ``param`` (from :func:`join_text`) into a text[]."""
    return f"string_to_array({param}, E'\\x1f', E'\\x1e')"


def join_text(values: Sequence[Any]) -> str | None:
    """``values`` (strings or None, at least two) as one string for
    :func:`text_array_sql`; None when they cannot be (a value that is not a
    string, or that holds a separator)."""
    nulls = values.count(None)
    try:
        joined = TEXT_SEPARATOR.join(
            [TEXT_NULL if v is None else v for v in values] if nulls else values
        )
    except TypeError:
        return None
    if joined.count(TEXT_SEPARATOR) != len(values) - 1 or joined.count(TEXT_NULL) != nulls:
        return None
    return joined


def text_columns(columns: Sequence[Sequence[Any]]) -> tuple[list[Any], tuple[bool, ...]]:
    """Columns of strings as parameters: each as one joined string
    (:func:`join_text`) where it can be, else as a list (a text[]); and which
    were joined (for :func:`text_array_sql` or ``?::text[]`` in the SQL)."""
    params: list[Any] = []
    joined: list[bool] = []
    for column in columns:
        text = join_text(column) if len(column) >= 2 else None
        params.append(list(column) if text is None else text)
        joined.append(text is not None)
    return params, tuple(joined)


_TIMESTAMPS = "TIMESTAMP WITH TIME ZONE[]"
_MISSING: Any = object()


def _iso_times(values: list[Any]) -> list[str | None]:
    """Instants as ISO 8601 text (a batch shares a few: each is written once)."""
    text: dict[Any, str | None] = {None: None}
    out = []
    for v in values:
        t = text.get(v, _MISSING)
        if t is _MISSING:
            t = text[v] = v.isoformat()
        out.append(t)
    return out


def _batch_params(template: str, rows: Sequence[tuple[Any, ...]]) -> tuple[str | None, list[Any]]:
    """The array statement of ``template`` for ``rows`` and its parameters."""
    params: list[Any] = _columns(rows)
    scalars: frozenset[int] = frozenset()
    count = len(rows)
    if count >= SCALAR_MIN_ROWS:
        # The first column and an update's key stay arrays (unnest needs one; the
        # key is matched with = ANY of its array).
        scalars = frozenset(
            i for i, column in enumerate(params[1:-1], 1) if column.count(column[0]) == count
        )
        if (
            _SHAPES.get(template, ("insert",))[0] == "insert"
            and params[-1].count(params[-1][0]) == count
            and len(params) > 1
        ):
            scalars |= {len(params) - 1}
        for i in scalars:
            params[i] = params[i][0]
    joined: set[int] = set()
    if count >= 2 and template in _SHAPES:
        types = _param_types(template)
        for i, column in enumerate(params):
            if i in scalars:
                continue
            text: str | None = None
            if types[i][0] == "text[]":
                text = join_text(column)
            elif types[i][0] == _TIMESTAMPS:
                text = join_text(_iso_times(column))
            if text is not None:
                params[i] = text
                joined.add(i)
    return _array_sql(template, scalars, frozenset(joined)), params


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


def select_by_keys(
    dialect: str,
    table: str,
    columns: Sequence[str],
    keys: Sequence[Any],
    *,
    lock: bool,
    key: str = "id",
) -> tuple[str, tuple[Any, ...]]:
    """The query (and its parameters) for the rows whose ``key`` is one of
    ``keys`` (strings), in key order; ``lock``: FOR UPDATE on PostgreSQL
    (SQLite's writer already holds the database). PostgreSQL gets the keys as
    one joined string (:func:`join_text`) or, failing that, one array."""
    head = f"SELECT {', '.join(columns)} FROM {table} WHERE {key}"  # noqa: S608
    if dialect == "sqlite":
        return f"{head} IN ({placeholders(len(keys))}) ORDER BY {key}", tuple(keys)
    joined = join_text(keys) if len(keys) >= 2 else None
    any_of = "?::text[]" if joined is None else text_array_sql("?")
    sql = f"{head} = ANY({any_of}) ORDER BY {key}" + (" FOR UPDATE" if lock else "")
    return sql, (list(keys) if joined is None else joined,)


# PostgreSQL: a transaction whose every statement reads rows by key (the task
# engine's group commits and claims: tasks by primary key, the queue head through
# its own function) rules out sequential scans. With the default cost of a
# random page the planner would rather read a table of 10,000-20,000 tasks whole
# than look up a batch's 500 keys (measured in the dispatch benchmark: a report
# batch's lock and update each read every task).
_BY_KEY_ONLY = "SET LOCAL enable_seqscan = off"


async def by_key_only(connection: AsyncConnection) -> None:
    """Plan the rest of this transaction for lookups by key (PostgreSQL; SQLite
    picks its indexes without costs of its own to mislead it)."""
    if connection.dialect.name == "postgresql":
        adapter = await _asyncpg(connection)
        await _pg(adapter, _BY_KEY_ONLY, (), lambda pg: pg.execute(_BY_KEY_ONLY))


async def _asyncpg(connection: AsyncConnection) -> Any:
    """SQLAlchemy's adapter of the asyncpg connection under ``connection``, its
    transaction begun (the adapter otherwise begins it at the first statement)."""
    adapter: Any = (await connection.get_raw_connection()).dbapi_connection
    if adapter._transaction is None:
        await adapter._start_transaction()
    return adapter


async def _pg(adapter: Any, sql: str, params: Any, call: Callable[[Any], Awaitable[T]]) -> T:
    """``call(asyncpg_connection)``, with SQLAlchemy's error semantics."""
    try:
        async with adapter._execute_mutex:
            return await call(adapter._connection)
    except Exception as exc:
        try:
            adapter._handle_exception(exc)  # raises the DBAPI-level error
        except Exception as dbapi_error:
            raise DBAPIError.instance(sql, params, dbapi_error, adapter.dbapi.Error) from exc
        raise  # pragma: no cover  (_handle_exception always raises)


async def execute_many(
    connection: AsyncConnection, template: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Run ``template`` once per row, as one executemany."""
    if not rows:
        return
    dialect = connection.dialect.name
    sql = render(template, dialect)
    if dialect != "postgresql":
        for statement, params in _sqlite_statements(template, rows):
            await connection.exec_driver_sql(statement, params)
        return
    adapter = await _asyncpg(connection)
    await _pg_many(adapter, template, sql, rows)


async def _pg_many(adapter: Any, template: str, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    arrays: str | None = None
    params: list[Any] = []
    if len(rows) > 1 and not _repeats_a_key(template, rows):
        arrays, params = _batch_params(template, rows)
    if arrays is not None:
        await _pg(adapter, arrays, params, lambda pg: pg.execute(arrays, *params))
    else:
        await _pg(adapter, sql, rows, lambda pg: pg.executemany(sql, rows))


async def _execute_many_in(
    adapter: Any, template: str, sql: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    if adapter._transaction is None:
        await adapter._start_transaction()
    await _pg_many(adapter, template, sql, rows)


def execute_many_sync(
    connection: Connection, template: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """:func:`execute_many` on a sync connection (in a session's before-commit hook,
    which runs in SQLAlchemy's greenlet, so it may wait on the event loop)."""
    if not rows:
        return
    dialect = connection.dialect.name
    sql = render(template, dialect)
    if dialect != "postgresql":
        for statement, params in _sqlite_statements(template, rows):
            connection.exec_driver_sql(statement, params)
        return
    await_only(_execute_many_in(connection.connection.dbapi_connection, template, sql, rows))


async def fetch(
    connection: AsyncConnection, template: str, params: tuple[Any, ...]
) -> Sequence[Any]:
    """Rows of a query, as the driver returns them (convert with :class:`Values`)."""
    dialect = connection.dialect.name
    sql = render(template, dialect)
    if dialect != "postgresql":
        return (await connection.exec_driver_sql(sql, params)).all()
    adapter = await _asyncpg(connection)
    rows: Sequence[Any] = await _pg(adapter, sql, params, lambda pg: pg.fetch(sql, *params))
    return rows


async def _fetch_in(adapter: Any, sql: str, params: tuple[Any, ...]) -> Sequence[Any]:
    if adapter._transaction is None:
        await adapter._start_transaction()
    rows: Sequence[Any] = await _pg(adapter, sql, params, lambda pg: pg.fetch(sql, *params))
    return rows


def execute_sync(connection: Connection, sql: str, params: Sequence[Any]) -> None:
    """PostgreSQL: run one statement written in asyncpg's ``$n`` style on a sync
    connection (in a session's before-commit hook), in its transaction."""
    await_only(_fetch_in(connection.connection.dbapi_connection, sql, tuple(params)))


def fetch_sync(connection: Connection, template: str, params: tuple[Any, ...]) -> Sequence[Any]:
    """:func:`fetch` on a sync connection (in a session's before-commit hook)."""
    dialect = connection.dialect.name
    sql = render(template, dialect)
    if dialect != "postgresql":
        return connection.exec_driver_sql(sql, params).all()
    rows: Sequence[Any] = await_only(_fetch_in(connection.connection.dbapi_connection, sql, params))
    return rows


# Core statements run with many rows before a commit (the agents' metrics, the
# learning engine's sums, the knowledge base's records): compiled once, then run
# as an executemany of positional values, by asyncpg on PostgreSQL and through
# exec_driver_sql on SQLite (SQLAlchemy's executemany of dictionaries processes
# every parameter of every row: several times the driver's own work).


@dataclass(frozen=True)
class _CompiledCore:
    sql: str
    names: tuple[str, ...]
    constants: dict[str, Any]
    processors: dict[str, Callable[[Any], Any]]


_CORE: dict[tuple[Any, str, tuple[str, ...]], _CompiledCore | None] = {}


def _compile_core(connection: Connection, stmt: Any, keys: tuple[str, ...]) -> _CompiledCore | None:
    compiled = stmt.compile(dialect=connection.dialect, column_keys=list(keys))
    names = tuple(compiled.positiontup or ())
    if not names or "POSTCOMPILE" in compiled.string:
        return None  # not positional, or parameters rendered per execution
    if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
        return None  # column defaults computed per row by SQLAlchemy: not here
    constants = {name: value for name, value in compiled.params.items() if name not in keys}
    if any(name not in keys and name not in constants for name in names):
        return None
    processors = {
        name: proc for name, proc in compiled._bind_processors.items() if name in set(names)
    }
    return _CompiledCore(compiled.string, names, constants, processors)


def execute_core_many_sync(connection: Connection, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """``connection.execute(stmt, rows)`` (every row with the same keys), at the
    driver level (see above), in the same transaction."""
    if not rows:
        return
    dialect = connection.dialect.name
    keys = tuple(rows[0])
    if (stmt, dialect, keys) not in _CORE:
        _CORE[(stmt, dialect, keys)] = _compile_core(connection, stmt, keys)
    compiled = _CORE[(stmt, dialect, keys)]
    if compiled is None:  # not one this can run
        connection.execute(stmt, rows)
        return
    names, constants, processors = compiled.names, compiled.constants, compiled.processors
    params = []
    for row in rows:
        values = []
        for name in names:
            value = row[name] if name in row else constants[name]
            processor = processors.get(name)
            values.append(value if processor is None else processor(value))
        params.append(tuple(values))
    if dialect != "postgresql":
        connection.exec_driver_sql(compiled.sql, params)
        return
    adapter = connection.connection.dbapi_connection
    await_only(_core_in(adapter, compiled.sql, params))


async def _core_in(adapter: Any, sql: str, params: list[tuple[Any, ...]]) -> None:
    if adapter._transaction is None:
        await adapter._start_transaction()
    await _pg(adapter, sql, params, lambda pg: pg.executemany(sql, params))

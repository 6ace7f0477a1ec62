"""Experiences recorded from finished tasks: a ``tasks.hooks`` listener buffers
a few values per task in the unit of work that ends it; at commit they become
one ``INSERT ... SELECT`` from the tasks' rows (the summary and the notes are
cut from the task's input, result or error by the database, never loaded into
the server): over arrays on PostgreSQL, an executemany on SQLite, so the
dispatch path pays one statement per commit, not one per task. Rolled back with
the task's change.

Switched by ``knowledge.record_tasks`` (on by default); a cancelled task
teaches nothing and is not recorded.
"""

from __future__ import annotations

import functools
import itertools
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.config import KnowledgeSettings
from ymera.db import driver
from ymera.db.database import DB_KEY, Database, at_commit
from ymera.kit.ids import new_id
from ymera.tasks import hooks

_BUFFER = "ymera_knowledge_rows"
_configs: dict[Database, KnowledgeSettings] = {}
RECORDED = frozenset({"SUCCEEDED", "FAILED", "DEAD"})


def bind(db: Database, cfg: KnowledgeSettings) -> None:
    """Record the tasks that end on ``db`` as ``cfg`` says (the app does this)."""
    _configs[db] = cfg


def unbind(db: Database) -> None:
    _configs.pop(db, None)


@hooks.on_task_finished
async def record(session: AsyncSession, finished: hooks.TaskFinished) -> None:
    cfg = _configs.get(session.info.get(DB_KEY))  # type: ignore[arg-type]
    if cfg is None or not cfg.record_tasks or finished.status not in RECORDED:
        return
    rows = session.info.get(_BUFFER)
    if rows is None:
        rows = session.info[_BUFFER] = _Rows(cfg)
    rows.append((new_id(), finished.id, finished.status, finished.agent_id, finished.at))


class _Rows(list[tuple[str, str, str, str | None, datetime]]):
    """A unit of work's experiences to record: (id, task, outcome, agent, at), and
    the settings they are cut with."""

    def __init__(self, cfg: KnowledgeSettings) -> None:
        super().__init__()
        self.summary_chars = cfg.summary_chars
        self.notes_chars = cfg.notes_chars


# The type, the summary (the input's JSON text, cut) and the notes (the result's
# JSON text, or the error's message, cut) come from the task's row as this
# transaction left it: nothing of the task is loaded into the server.
# PostgreSQL: one statement over arrays (an executemany would bind and execute
# the INSERT ... SELECT once per row: the executor's start-up, the generated
# tsvector's expression included, every time). The instant is sent once when
# every row shares it (one unit of work: one clock reading); rows keep their
# order (seq follows the order the tasks finished in).
# The text columns go as joined strings the server splits (driver.join_text),
# or as text[] when a value holds a separator.
_PG_RECORD = (
    "INSERT INTO knowledge (id, task_type, summary, outcome, agent_id, task_id, notes,"
    " source, created_at)"
    " SELECT u.id, t.type, left(t.input::text, $5::integer), u.outcome, u.agent, t.id,"
    " left(CASE WHEN u.outcome = 'SUCCEEDED' THEN coalesce(t.result::text, '')"
    " ELSE coalesce(t.error ->> 'message', '') END, $6::integer), 'task', {at}"
    " FROM unnest({c1}, {c2}, {c3}, {c4}{at_array})"
    " WITH ORDINALITY AS u(id, task, outcome, agent{at_alias}, n)"
    " JOIN tasks t ON t.id = u.task"
    " WHERE t.id = ANY({c2})"
    " ORDER BY u.n"
)


@functools.lru_cache(maxsize=64)
def _pg_record_sql(one_at: bool, joined: tuple[bool, ...]) -> str:
    columns = {
        f"c{i}": driver.text_array_sql(f"${i}") if j else f"${i}::text[]"
        for i, j in enumerate(joined, 1)
    }
    if one_at:
        return _PG_RECORD.format(at="$7::timestamptz", at_array="", at_alias="", **columns)
    return _PG_RECORD.format(at="u.at", at_array=", $7::timestamptz[]", at_alias=", at", **columns)


# SQLite: statements of up to _SQLITE_ROWS experiences each, the tasks joined by
# id (an executemany of one row at a time binds, steps and resets each row:
# 16 us per experience in the dispatch benchmark against ~10 in statements of
# 32). The ordinal keeps the rows in the order the tasks finished in. The cut
# lengths are settings (integers), written into the statement.
_SQLITE_ROWS = 32


@functools.lru_cache(maxsize=64)
def _sqlite_record_sql(count: int, summary_chars: int, notes_chars: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * count)
    # This module's SQL: integers and placeholders only.
    return (
        "INSERT INTO knowledge (id, task_type, summary, outcome, agent_id, task_id, notes,"  # noqa: S608
        " source, created_at)"
        f" SELECT v.column1, t.type, substr(CAST(t.input AS TEXT), 1, {summary_chars:d}),"
        " v.column2, v.column3, t.id,"
        " substr(CASE WHEN v.column2 = 'SUCCEEDED' THEN coalesce(CAST(t.result AS TEXT), '')"
        f" ELSE coalesce(json_extract(t.error, '$.message'), '') END, 1, {notes_chars:d}),"
        f" 'task', v.column4 FROM (VALUES {values}) AS v"
        " JOIN tasks t ON t.id = v.column5 ORDER BY v.column6"
    )


# SQLite: the rows just recorded go into the text index with one statement (the
# insert trigger skips source 'task' rows, migration 0020: a trigger per row
# cost about twice as much).
_SQLITE_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM knowledge"
_SQLITE_INDEX = (
    "INSERT INTO knowledge_fts(rowid, task_type, summary, notes)"
    " SELECT seq, task_type, summary, notes FROM knowledge WHERE seq > ? AND source = 'task'"
)


@at_commit(42)
def _write(session: Session) -> None:
    rows: _Rows | None = session.info.pop(_BUFFER, None)
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        first_at = rows[0][4]
        one_at = all(row[4] == first_at for row in rows)
        texts, joined = driver.text_columns(list(zip(*rows, strict=True))[:4])
        params = (
            *texts,
            rows.summary_chars,
            rows.notes_chars,
            first_at if one_at else [row[4] for row in rows],
        )
        sql = _pg_record_sql(one_at, joined)
        driver.execute_sync(connection, sql, params)
        return
    values = driver.values_for("sqlite")
    times: dict[datetime, Any] = {}
    records: list[tuple[Any, ...]] = []
    for n, (kid, task, outcome, agent, at) in enumerate(rows):
        if at not in times:
            times[at] = values.time(at)
        records.append((kid, outcome, agent, times[at], task, n))
    last = connection.exec_driver_sql(_SQLITE_LAST_SEQ).scalar_one()
    whole = len(records) // _SQLITE_ROWS * _SQLITE_ROWS
    if whole:
        sql = _sqlite_record_sql(_SQLITE_ROWS, rows.summary_chars, rows.notes_chars)
        chunks = [
            tuple(itertools.chain.from_iterable(records[i : i + _SQLITE_ROWS]))
            for i in range(0, whole, _SQLITE_ROWS)
        ]
        connection.exec_driver_sql(sql, chunks)
    if whole < len(records):
        rest = records[whole:]
        sql = _sqlite_record_sql(len(rest), rows.summary_chars, rows.notes_chars)
        connection.exec_driver_sql(sql, tuple(itertools.chain.from_iterable(rest)))
    connection.exec_driver_sql(_SQLITE_INDEX, (last,))


@sa_event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_BUFFER, None)

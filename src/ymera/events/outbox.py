"""Record events inside the caller's unit of work (the transactional outbox).

Events are buffered on the session and written with one executemany just
before the transaction commits, each with its ``seq`` (its place in the
stream, gap-free, in commit order); a rollback drops the buffer. After commit
the relay publishes them on the bus.
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.db import driver
from ymera.db.database import (
    DB_KEY,
    EVENT_TYPES,
    LAST,
    NUMBERED_FROM,
    OUTBOX_FLAG,
    PUBLISH_ROWS,
    Database,
    at_commit,
)
from ymera.kit.clock import utcnow
from ymera.models.events import EventSequencer

_BUFFER = "ymera_event_buffer"
_RECORDED_AT = "ymera_events_recorded_at"
# Events are written at the driver level (ymera.db.driver): thousands per second.
_COLUMNS = ("type", "resource_type", "resource_id", "data", "actor", "created_at")
_INSERT_SEQUENCED_SQL = driver.insert_sql("events", (*_COLUMNS, "seq"))
_SEQ = cast(Table, EventSequencer.__table__)
_LAST_SEQ = select(_SEQ.c.last_seq).where(_SEQ.c.id == 1)
_START_SEQ = insert(_SEQ).values(id=1, last_seq=0)
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)
_RESERVE_SEQ = (
    update(_SEQ)
    .where(_SEQ.c.id == 1)
    .values(last_seq=_SEQ.c.last_seq + bindparam("n"))
    .returning(_SEQ.c.last_seq)
)
_SET_SEQ = update(_SEQ).where(_SEQ.c.id == 1).values(last_seq=bindparam("last"))
# PostgreSQL: numbers taken and events inserted in one statement (one round trip,
# one INSERT of all the rows instead of one per row); returns the last number
# taken, or no row when the sequencer row does not exist yet. The rows of one
# write share their ``created_at`` (record_event), sent once; each text column
# goes as one joined string (driver.join_text) or, failing that, as a text[].
_RESERVE_AND_INSERT_PG = """
WITH s AS (UPDATE event_sequencer SET last_seq = last_seq + ?::bigint WHERE id = 1
           RETURNING last_seq),
i AS (INSERT INTO events (type, resource_type, resource_id, data, actor, created_at, seq)
      SELECT u.type, u.resource_type, u.resource_id, u.data::jsonb, u.actor, t.created_at,
             s.last_seq - ?::bigint + u.n
      FROM s, unnest({columns})
              WITH ORDINALITY AS u(type, resource_type, resource_id, data, actor, n),
           (SELECT ?::timestamptz AS created_at) AS t)
SELECT last_seq FROM s
"""


@functools.lru_cache(maxsize=64)
def _reserve_and_insert_sql(joined: tuple[bool, ...]) -> str:
    columns = ", ".join(driver.text_array_sql("?") if j else "?::text[]" for j in joined)
    return _RESERVE_AND_INSERT_PG.replace("{columns}", columns)


def record_event(
    session: AsyncSession | Session,
    *,
    type: str,
    resource_type: str,
    resource_id: str,
    data: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    """Add an event to the session's unit of work; it commits (or rolls back) with
    the change it describes. The events of one unit of work share one
    ``created_at``: when it recorded its first (they are ordered by ``seq``; one
    instant per commit also makes a group commit's thousands of events cheaper
    to write and to publish)."""
    buffer: list[dict[str, Any]] | None = session.info.get(_BUFFER)
    if buffer is None:
        buffer = session.info[_BUFFER] = []
        session.info[_RECORDED_AT] = utcnow()
    buffer.append(
        {
            "type": type,
            "resource_type": resource_type,
            "resource_id": str(resource_id),
            "data": data or {},
            "actor": actor,
            "created_at": session.info[_RECORDED_AT],
        }
    )


async def flush_events(session: AsyncSession) -> None:
    """Write the buffered events now (they are otherwise written at commit)."""
    if session.info.get(_BUFFER):
        await session.run_sync(_write_buffered_events)


@at_commit(LAST)
def _write_buffered_events(session: Session) -> None:
    session.info.pop(_RECORDED_AT, None)
    rows = session.info.pop(_BUFFER, None)
    if not rows:
        return
    connection = session.connection()
    # The events take their ``seq`` here, in this transaction: reserving numbers
    # locks the sequencer row until COMMIT, so transactions that record events
    # commit in the order of their numbers (on SQLite the single writer orders
    # them anyway) and a reader that has seen seq N never sees a smaller one
    # commit later. This runs last before COMMIT (at_commit(LAST)), holding the
    # lock only for the insert and the commit itself; the relay then only
    # publishes (no second transaction per commit, no second write of each row).
    # The group-commit writer makes most commits large, so the lock is taken a
    # few hundred times a second, not once per event.
    if connection.dialect.name != "postgresql" or not _reserve_and_insert_pg(connection, rows):
        last = _reserve(connection, len(rows))
        for offset, row in enumerate(rows, 1):
            row["seq"] = last + offset
        params = _params(connection, rows, True)
        driver.execute_many_sync(connection, _INSERT_SEQUENCED_SQL, params)
    db = session.info.get(DB_KEY)
    if isinstance(db, Database) and NUMBERED_FROM not in session.info:
        session.info[NUMBERED_FROM] = rows[0]["seq"]
        db.numbering.add(rows[0]["seq"])
    session.info.setdefault(PUBLISH_ROWS, []).extend(rows)
    _mark(session.info, rows)


def _reserve_and_insert_pg(connection: Connection, rows: list[dict[str, Any]]) -> bool:
    """Number and insert ``rows`` in one statement; False (nothing done) when the
    sequencer row is missing."""
    count = len(rows)
    columns = list(zip(*_params(connection, rows, False), strict=True))
    instants = set(columns.pop())  # one per write (record_event)
    if len(instants) != 1:
        return False  # pragma: no cover  (the general path below numbers them)
    params, joined = driver.text_columns(columns)
    found = driver.fetch_sync(
        connection, _reserve_and_insert_sql(joined), (count, count, *params, *instants)
    )
    if not found:
        return False
    last = int(found[0][0]) - count
    for offset, row in enumerate(rows, 1):
        row["seq"] = last + offset
    return True


def _params(connection: Connection, rows: list[dict[str, Any]], seq: bool) -> list[tuple[Any, ...]]:
    values = driver.values_for(connection.dialect.name)
    times = {at: values.time(at) for at in {row["created_at"] for row in rows}}
    return [
        (
            row["type"],
            row["resource_type"],
            row["resource_id"],
            values.json(row["data"]),
            row["actor"],
            times[row["created_at"]],
            *((row["seq"],) if seq else ()),
        )
        for row in rows
    ]


def _reserve(connection: Connection, count: int) -> int:
    """Take ``count`` event numbers; returns the last one taken before them."""
    if _RETURNING:  # one statement
        end = connection.execute(_RESERVE_SEQ, {"n": count}).scalar()
        if end is not None:
            return int(end) - count
    else:
        last = connection.execute(_LAST_SEQ).scalar()
        if last is not None:
            connection.execute(_SET_SEQ, {"last": last + count})
            return int(last)
    connection.execute(_START_SEQ)
    connection.execute(_SET_SEQ, {"last": count})
    return 0


def _mark(info: dict[Any, Any], rows: list[dict[str, Any]]) -> None:
    info[OUTBOX_FLAG] = True
    info.setdefault(EVENT_TYPES, set()).update(r["type"] for r in rows)


@sa_event.listens_for(Session, "after_rollback")
def _drop_buffered_events(session: Session) -> None:
    session.info.pop(_BUFFER, None)
    session.info.pop(_RECORDED_AT, None)


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_buffered_events_soft(session: Session, _previous: Any) -> None:
    session.info.pop(_BUFFER, None)
    session.info.pop(_RECORDED_AT, None)

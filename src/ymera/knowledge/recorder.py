"""Experiences recorded from finished tasks: a ``tasks.hooks`` listener buffers
one row per task in the unit of work that ends it; at commit the rows become
one ``INSERT ... SELECT`` (the task's input is cut to a summary by the
database, never loaded into the server): over arrays on PostgreSQL, an
executemany on SQLite, so the dispatch path pays one statement per commit, not
one per task. Rolled back with the task's change.

Switched by ``knowledge.record_tasks`` (on by default); a cancelled task
teaches nothing and is not recorded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.config import KnowledgeSettings
from ymera.db import driver
from ymera.db.database import DB_KEY, Database, at_commit
from ymera.kit import jsonx
from ymera.kit.ids import new_id
from ymera.knowledge import repository
from ymera.tasks import hooks

_BUFFER = "ymera_knowledge_rows"
_configs: dict[Database, KnowledgeSettings] = {}
RECORDED = frozenset({"SUCCEEDED", "FAILED", "DEAD"})


def bind(db: Database, cfg: KnowledgeSettings) -> None:
    """Record the tasks that end on ``db`` as ``cfg`` says (the app does this)."""
    _configs[db] = cfg


def unbind(db: Database) -> None:
    _configs.pop(db, None)


def _notes(finished: hooks.TaskFinished, chars: int) -> str:
    if finished.status == "SUCCEEDED":
        if finished.result is None:
            return ""
        text = jsonx.dumps(finished.result)
    else:
        error = finished.error or {}
        text = str(error.get("message") or "")
    return text[:chars]


@hooks.on_task_finished
async def record(session: AsyncSession, finished: hooks.TaskFinished) -> None:
    cfg = _configs.get(session.info.get(DB_KEY))  # type: ignore[arg-type]
    if cfg is None or not cfg.record_tasks or finished.status not in RECORDED:
        return
    session.info.setdefault(_BUFFER, []).append(
        {
            "k_id": new_id(),
            "k_task": finished.id,
            "k_outcome": finished.status,
            "k_agent": finished.agent_id,
            "k_notes": _notes(finished, cfg.notes_chars),
            "k_source": "task",
            "k_at": finished.at,
            "k_chars": cfg.summary_chars,
        }
    )


# PostgreSQL: a commit's experiences in one statement over arrays (an
# executemany binds and executes the INSERT ... SELECT once per row: the
# executor's start-up, the generated tsvector's expression included, every time).
# The instant is sent once when every row shares it (one unit of work: one clock
# reading); rows keep their order (seq follows the order the tasks finished in).
_PG_RECORD = (
    "INSERT INTO knowledge (id, task_type, summary, outcome, agent_id, task_id, notes,"
    " source, created_at)"
    " SELECT u.id, t.type, left(t.input::text, $6::integer), u.outcome, u.agent, t.id,"
    " u.notes, $7::text, {at}"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]{at_array})"
    " WITH ORDINALITY AS u(id, task, outcome, agent, notes{at_alias}, n)"
    " JOIN tasks t ON t.id = u.task"
    " WHERE t.id = ANY($2::text[])"
    " ORDER BY u.n"
)
_PG_RECORD_ONE_AT = _PG_RECORD.format(at="$8::timestamptz", at_array="", at_alias="")
_PG_RECORD_AT_EACH = _PG_RECORD.format(at="u.at", at_array=", $8::timestamptz[]", at_alias=", at")


@at_commit(42)
def _write(session: Session) -> None:
    rows: list[dict[str, Any]] | None = session.info.pop(_BUFFER, None)
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and len(rows) > 1:
        _write_pg(session, rows)
        return
    stmt = repository.record_statement(dialect)
    driver.execute_core_many_sync(session.connection(), stmt, rows)


def _write_pg(session: Session, rows: list[dict[str, Any]]) -> None:
    first_at = rows[0]["k_at"]
    one_at = all(row["k_at"] == first_at for row in rows)
    params = (
        [row["k_id"] for row in rows],
        [row["k_task"] for row in rows],
        [row["k_outcome"] for row in rows],
        [row["k_agent"] for row in rows],
        [row["k_notes"] for row in rows],
        rows[0]["k_chars"],
        rows[0]["k_source"],
        first_at if one_at else [row["k_at"] for row in rows],
    )
    sql = _PG_RECORD_ONE_AT if one_at else _PG_RECORD_AT_EACH
    driver.execute_sync(session.connection(), sql, params)


@sa_event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_BUFFER, None)

"""Experiences recorded from finished tasks: a ``tasks.hooks`` listener buffers
one row per task in the unit of work that ends it; at commit the rows become
one executemany ``INSERT ... SELECT`` (the task's input is cut to a summary by
the database, never loaded into the server), so the dispatch path pays one
statement per commit, not one per task. Rolled back with the task's change.

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


@at_commit(42)
def _write(session: Session) -> None:
    rows: list[dict[str, Any]] | None = session.info.pop(_BUFFER, None)
    if rows:
        stmt = repository.record_statement(session.get_bind().dialect.name)
        driver.execute_core_many_sync(session.connection(), stmt, rows)


@sa_event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_BUFFER, None)

"""Run Alembic migrations programmatically (``ymera serve``, ``ymera db``, tests)."""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from ymera.db.database import Database

log = structlog.get_logger("ymera.db")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Alembic keeps its `context` and `op` proxies in module globals, so two migrations
# in one process (e.g. two apps started side by side) must not interleave. Separate
# processes are serialised by the database (advisory lock / write lock) instead.
_process_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _process_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _process_locks.get(loop)
    if lock is None:
        lock = _process_locks[loop] = asyncio.Lock()
    return lock


# Text-search objects the migrations create per dialect, outside the models (see
# ymera.knowledge.repository): the FTS5 table and its shadow tables (SQLite), the
# generated tsvector column and its GIN index (PostgreSQL).
TEXT_INDEX_TABLE = "knowledge_fts"
TEXT_INDEX_COLUMNS = {("knowledge", "search")}
TEXT_INDEXES = {"ix_knowledge_search"}


def is_text_index_table(name: str | None) -> bool:
    return bool(name) and (name == TEXT_INDEX_TABLE or str(name).startswith(TEXT_INDEX_TABLE + "_"))


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, other: Any) -> bool:
    """For autogenerate: leave the text-search objects alone."""
    if type_ == "table":
        return not is_text_index_table(name)
    if type_ == "column":
        return (getattr(getattr(obj, "table", None), "name", None), name) not in TEXT_INDEX_COLUMNS
    if type_ == "index":
        return name not in TEXT_INDEXES
    return True


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(db: Database, revision: str = "head") -> None:
    def _do(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with _process_lock():
        log.info("migrating", target=revision, before=await current_revision(db))
        async with db.engine.connect() as conn:
            await conn.run_sync(_do)
            await conn.commit()


async def downgrade(db: Database, revision: str) -> None:
    def _do(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with _process_lock(), db.engine.connect() as conn:
        await conn.run_sync(_do)
        await conn.commit()


async def current_revision(db: Database) -> str | None:
    def _do(conn: Connection) -> str | None:
        ctx = MigrationContext.configure(conn, opts={"transactional_ddl": False})
        return ctx.get_current_revision()

    async with db.read_engine.connect() as conn:
        return await conn.run_sync(_do)


async def is_at_head(db: Database) -> bool:
    return await current_revision(db) == head_revision()

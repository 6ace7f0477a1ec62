"""An empty database of the backend's kind (migrations and readiness need one)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures import services
from tests.fixtures.backends import Backend


@pytest.fixture
async def empty_database_url(backend: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """A brand-new database with no tables: a new SQLite file, or a new PostgreSQL
    database (dropped when the session ends)."""
    if backend.db_kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    services.need("postgres")
    name = services.unique_name("ymera_empty")
    await services.create_pg_database(name)
    try:
        yield services.pg_url_for(name)
    finally:
        services.drop_pg_database_later(name)

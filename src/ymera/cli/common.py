"""Helpers shared by CLI commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

from rich.console import Console

from ymera.config import Settings, get_settings
from ymera.db.database import Database

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


def run(coro: Awaitable[T]) -> T:
    async def _main() -> T:
        return await coro

    return asyncio.run(_main())


def database(settings: Settings | None = None) -> Database:
    settings = settings or get_settings()
    return Database(
        settings.resolved_database_url, sqlite_busy_timeout_ms=settings.db.sqlite_busy_timeout_ms
    )


@asynccontextmanager
async def open_database(settings: Settings | None = None) -> AsyncIterator[Database]:
    db = database(settings)
    try:
        yield db
    finally:
        await db.dispose()

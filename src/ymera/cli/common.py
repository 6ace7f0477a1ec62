"""Helpers shared by CLI commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from ymera.config import Settings, get_settings

if TYPE_CHECKING:
    from ymera.db.database import Database

# The database layer (models, migrations: about half a second to import) is
# imported by the commands that open the database, not by every command: most
# talk to a server over HTTP.

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    """The settings; invalid ones end the command with a message naming each variable."""
    try:
        return get_settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            variable = "YMERA_" + "__".join(str(part).upper() for part in error["loc"])
            lines.append(f"  {variable}={error.get('input')!r}: {error['msg']}")
        fail("invalid settings\n" + "\n".join(lines), code=2)


def table(key: str, *columns: str) -> Table:
    """A table whose first column (an id to copy) is never cut; the others fold
    rather than hide text behind an ellipsis in a narrow terminal."""
    return Table(
        Column(key, no_wrap=True, min_width=len(key)),
        *(Column(name, overflow="fold") for name in columns),
    )


def run(coro: Awaitable[T]) -> T:
    async def _main() -> T:
        return await coro

    return asyncio.run(_main())


def database(settings: Settings | None = None) -> Database:
    from ymera.db.database import Database

    settings = settings or load_settings()
    return Database(
        settings.resolved_database_url, sqlite_busy_timeout_ms=settings.db.sqlite_busy_timeout_ms
    )


@asynccontextmanager
async def open_database(
    settings: Settings | None = None, *, require_schema: bool = False
) -> AsyncIterator[Database]:
    """The configured database. ``require_schema``: exit with a clear message unless
    the schema is at the newest migration."""
    from ymera.db import migrate

    db = database(settings)
    try:
        if require_schema and not await migrate.is_at_head(db):
            current = await migrate.current_revision(db)
            state = "has no schema yet" if current is None else f"is at revision {current}"
            fail(
                f"the database {state}; run `ymera db upgrade` first "
                "(`ymera serve` also migrates when it starts)."
            )
        yield db
    finally:
        await db.dispose()

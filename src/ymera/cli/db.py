"""`ymera db`: schema migrations."""

from __future__ import annotations

import typer

from ymera.cli.common import console, open_database, run

app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)

# Alembic is imported by these commands when they run, not by every `ymera` command.


@app.command()
def upgrade(
    revision: str = typer.Argument("head", help="Target revision (default: newest)."),
) -> None:
    """Apply migrations up to REVISION (default: head)."""

    async def _go() -> str | None:
        from ymera.db import migrate

        async with open_database() as db:
            await migrate.upgrade(db, revision)
            return await migrate.current_revision(db)

    console.print(f"[green]database at revision[/] {run(_go())}")


@app.command()
def downgrade(
    revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base."),
) -> None:
    """Revert migrations down to REVISION."""

    async def _go() -> str | None:
        from ymera.db import migrate

        async with open_database() as db:
            await migrate.downgrade(db, revision)
            return await migrate.current_revision(db)

    console.print(f"[yellow]database at revision[/] {run(_go())}")


@app.command()
def current() -> None:
    """Show the database's revision and the newest one this version knows."""
    from ymera.db import migrate

    async def _go() -> str | None:
        async with open_database() as db:
            return await migrate.current_revision(db)

    cur = run(_go())
    head = migrate.head_revision()
    state = "[green]up to date[/]" if cur == head else "[yellow]needs `ymera db upgrade`[/]"
    console.print(f"current: {cur or '(empty)'}   head: {head}   {state}")

"""`ymera users`: manage user accounts directly in the database."""

from __future__ import annotations

import typer

from ymera.auth.passwords import generate_password
from ymera.auth.permissions import Role
from ymera.cli.common import console, fail, open_database, run, table
from ymera.errors import YmeraError

app = typer.Typer(help="Manage users.", no_args_is_help=True)

# The commands import the auth service (and the database layer) when they run:
# importing it costs every `ymera` command a quarter of a second.


@app.command()
def create(
    username: str = typer.Argument(..., help="Login name."),
    role: Role = typer.Option(Role.VIEWER, help="Role of the new user."),
    admin: bool = typer.Option(False, "--admin", help="Shortcut for --role admin."),
    password: str | None = typer.Option(
        None, help="Password (at least 12 characters). Omit to generate one, printed once."
    ),
    email: str | None = typer.Option(None, help="E-mail address."),
) -> None:
    """Create a user. Without --password a random one is generated and printed once."""
    chosen = Role.ADMIN if admin else role
    generated = password is None
    secret = password or generate_password()
    if len(secret) < 12:
        fail("the password must be at least 12 characters", code=2)

    async def _go() -> str:
        from ymera.auth import service

        async with open_database(require_schema=True) as db, db.transaction() as session:
            user = await service.create_user(
                session, username=username, password=secret, role=chosen, email=email, actor="cli"
            )
            return user.id

    try:
        user_id = run(_go())
    except YmeraError as exc:
        fail(exc.message)
    console.print(f"created [bold]{username}[/] ({chosen.value}) id={user_id}")
    if generated:
        console.print(f"password (shown once): [bold]{secret}[/]")


@app.command("list")
def list_users(limit: int = typer.Option(100, min=1, max=500)) -> None:
    """List users."""

    async def _go() -> list[tuple[str, str, str, bool]]:
        from ymera.auth import service

        async with (
            open_database(require_schema=True) as db,
            db.transaction(readonly=True) as session,
        ):
            page = await service.list_users(session, cursor=None, limit=limit)
            return [(u.id, u.username, u.role, u.is_active) for u in page.items]

    rows = table("id", "username", "role", "active")
    for uid, name, role, active in run(_go()):
        rows.add_row(uid, name, role, "yes" if active else "no")
    console.print(rows)

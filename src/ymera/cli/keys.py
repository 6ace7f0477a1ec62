"""`ymera keys`: API keys for programs and agents."""

from __future__ import annotations

from datetime import timedelta

import typer

from ymera.auth.permissions import Permission, role_permissions
from ymera.auth.principal import Principal
from ymera.cli.common import console, fail, open_database, run, table
from ymera.errors import YmeraError
from ymera.kit.clock import utcnow

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)

# The commands import the auth service and repository (and the database layer)
# when they run: importing them costs every `ymera` command a quarter of a second.


async def _principal_for(session: object, username: str) -> Principal:
    from sqlalchemy.ext.asyncio import AsyncSession

    from ymera.auth import repository as auth_repository

    assert isinstance(session, AsyncSession)
    user = await auth_repository.get_user_by_username(session, username)
    if user is None:
        fail(f"no user {username!r}")
    return Principal(
        kind="user",
        user_id=user.id,
        role=user.role,
        permissions=role_permissions(user.role),
        username=user.username,
    )


@app.command()
def create(
    name: str = typer.Argument(..., help="A label for the key."),
    user: str = typer.Option("admin", "--user", "-u", help="Owner of the key."),
    scope: list[Permission] | None = typer.Option(
        None, "--scope", "-s", help="Permission to grant (repeatable). Default: all of the owner's."
    ),
    agent: str | None = typer.Option(None, help="Bind the key to this agent id (agent key)."),
    expires_in_days: int | None = typer.Option(None, min=1, help="Expire after N days."),
) -> None:
    """Create an API key; the secret is printed once."""

    async def _go() -> tuple[str, str]:
        from ymera.auth import service

        async with open_database(require_schema=True) as db, db.transaction() as session:
            principal = await _principal_for(session, user)
            now = utcnow()
            row, secret = await service.create_api_key(
                session,
                principal=principal,
                name=name,
                scopes=list(scope) if scope else None,
                expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
                agent_id=agent,
                now=now,
            )
            return row.id, secret

    try:
        key_id, secret = run(_go())
    except YmeraError as exc:
        fail(exc.message)
    console.print(f"key id: {key_id}")
    console.print(f"key (shown once): [bold]{secret}[/]")


@app.command("list")
def list_keys(
    user: str | None = typer.Option(None, "--user", "-u", help="Only this owner's keys."),
    include_revoked: bool = typer.Option(False, help="Show revoked keys too."),
) -> None:
    """List API keys (never the secrets)."""

    async def _go() -> list[tuple[str, str, str, str, str, str]]:
        from ymera.auth import repository as auth_repository

        async with (
            open_database(require_schema=True) as db,
            db.transaction(readonly=True) as session,
        ):
            owner_id = None
            if user:
                owner_id = (await _principal_for(session, user)).user_id
            rows = await auth_repository.list_api_keys(
                session,
                owner_id=owner_id,
                agent_id=None,
                include_revoked=include_revoked,
                after_id=None,
                limit=1000,
            )
            return [
                (
                    r.id,
                    r.name,
                    r.prefix,
                    r.kind,
                    "revoked" if r.revoked_at else "active",
                    f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "-",
                )
                for r in rows
            ]

    rows = table("id", "name", "prefix", "kind", "state", "last used")
    for row in run(_go()):
        rows.add_row(*row)
    console.print(rows)


@app.command()
def revoke(key_id: str = typer.Argument(..., help="Id of the key to revoke.")) -> None:
    """Revoke an API key."""

    async def _go() -> None:
        from ymera.auth import repository as auth_repository
        from ymera.auth import service

        async with open_database(require_schema=True) as db, db.transaction() as session:
            row = await auth_repository.get_api_key(session, key_id)
            if row is None:
                fail(f"no API key {key_id!r}")
            owner = await auth_repository.get_user(session, row.owner_id)
            principal = Principal(
                kind="user",
                user_id=row.owner_id,
                role=owner.role if owner else "viewer",
                permissions=frozenset(Permission),
            )
            await service.revoke_api_key(session, principal=principal, key_id=key_id, now=utcnow())

    try:
        run(_go())
    except YmeraError as exc:
        fail(exc.message)
    console.print(f"revoked {key_id}")

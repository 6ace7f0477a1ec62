"""The `ymera` CLI, command by command."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from ymera import __version__
from ymera.cli import common
from ymera.db import migrate


def test_version(cli: Cli) -> None:
    assert cli.ok("version").strip() == __version__


def test_db_upgrade_then_current(cli: Cli) -> None:
    before = cli.ok("db", "current")
    assert "current: (empty)" in before
    assert "needs `ymera db upgrade`" in before

    upgraded = cli.ok("db", "upgrade")
    head = migrate.head_revision()
    assert f"database at revision {head}" in upgraded

    after = cli.ok("db", "current")
    assert f"current: {head}" in after
    assert "up to date" in after


def test_db_downgrade_to_base_and_back(migrated_cli: Cli) -> None:
    assert "database at revision None" in migrated_cli.ok("db", "downgrade", "base")
    assert "current: (empty)" in migrated_cli.ok("db", "current")
    migrated_cli.ok("db", "upgrade")
    assert "up to date" in migrated_cli.ok("db", "current")


# --- users ---------------------------------------------------------------------------


def _password(output: str) -> str:
    found = re.search(r"password \(shown once\): (\S+)", output)
    assert found, output
    return found.group(1)


def test_users_create_admin_prints_a_one_time_password(migrated_cli: Cli) -> None:
    out = migrated_cli.ok("users", "create", "alice", "--admin")
    assert "created alice (admin)" in out
    password = _password(out)
    assert len(password) >= 12

    listed = migrated_cli.ok("users", "list")
    assert re.search(r"alice\s+│\s+admin\s+│\s+yes", listed), listed
    assert password not in listed


def test_created_password_is_the_users_password(migrated_cli: Cli) -> None:
    """The printed password is the user's real password (checked against the stored hash)."""
    from ymera.auth import repository
    from ymera.auth.passwords import verify_password
    from ymera.config import Settings
    from ymera.db.database import Database
    from ymera.models.auth import User

    password = _password(migrated_cli.ok("users", "create", "carol", "--role", "operator"))
    url = Settings(database_url=migrated_cli.env["YMERA_DATABASE_URL"]).resolved_database_url

    async def load() -> User | None:
        db = Database(url)
        try:
            async with db.transaction(readonly=True) as session:
                return await repository.get_user_by_username(session, "carol")
        finally:
            await db.dispose()

    user = asyncio.run(load())
    assert user is not None
    assert user.role == "operator"
    assert verify_password(password, user.password_hash)
    assert not verify_password(password + "x", user.password_hash)


def test_users_create_with_a_given_password_prints_no_password(migrated_cli: Cli) -> None:
    out = migrated_cli.ok(
        "users", "create", "dave", "--role", "developer", "--password", "long-enough-pass"
    )
    assert "created dave (developer)" in out
    assert "password" not in out


def test_duplicate_user_fails_clearly(migrated_cli: Cli) -> None:
    migrated_cli.ok("users", "create", "alice")
    result = migrated_cli("users", "create", "alice", "--admin")
    assert result.exit_code == 1
    assert "User 'alice' already exists" in result.output
    assert "Traceback" not in result.output
    assert migrated_cli.ok("users", "list").count("alice") == 1


def test_short_password_is_refused(migrated_cli: Cli) -> None:
    result = migrated_cli("users", "create", "erin", "--password", "short")
    assert result.exit_code == 2
    assert "at least 12 characters" in result.output
    assert "erin" not in migrated_cli.ok("users", "list")


def test_commands_on_an_unmigrated_database_say_what_to_do(cli: Cli) -> None:
    for args in (("users", "list"), ("users", "create", "x"), ("keys", "list")):
        result = cli(*args)
        assert result.exit_code == 1, args
        assert "run `ymera db upgrade`" in result.output, result.output
        assert "Traceback" not in result.output


# --- API keys ------------------------------------------------------------------------


def _key_id(output: str) -> str:
    found = re.search(r"key id: (\S+)", output)
    assert found, output
    return found.group(1)


def test_keys_create_list_revoke(migrated_cli: Cli) -> None:
    migrated_cli.ok("users", "create", "alice", "--admin")
    created = migrated_cli.ok("keys", "create", "ci", "--user", "alice")
    key_id = _key_id(created)
    secret = re.search(r"key \(shown once\): (\S+)", created)
    assert secret, created

    listed = migrated_cli.ok("keys", "list")
    assert key_id in listed
    assert "ci" in listed
    assert "active" in listed
    assert secret.group(1) not in listed

    assert f"revoked {key_id}" in migrated_cli.ok("keys", "revoke", key_id)
    assert key_id not in migrated_cli.ok("keys", "list")
    with_revoked = migrated_cli.ok("keys", "list", "--include-revoked")
    assert key_id in with_revoked
    assert "revoked" in with_revoked


def test_ids_are_never_cut_in_a_narrow_terminal(
    migrated_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An id is printed to be copied into `ymera keys revoke`; an ellipsis breaks that."""
    monkeypatch.setattr(common.console, "width", 80)
    migrated_cli.ok("users", "create", "alice", "--admin")
    key_id = _key_id(migrated_cli.ok("keys", "create", "a-rather-long-key-name", "-u", "alice"))
    assert key_id in migrated_cli.ok("keys", "list", "--include-revoked")
    assert "…" not in migrated_cli.ok("users", "list")


def test_keys_with_a_scope_and_for_another_owner(migrated_cli: Cli) -> None:
    migrated_cli.ok("users", "create", "bob", "--role", "developer")
    migrated_cli.ok("users", "create", "alice", "--admin")
    key_id = _key_id(migrated_cli.ok("keys", "create", "reader", "-u", "bob", "-s", "tasks:read"))
    assert key_id in migrated_cli.ok("keys", "list", "--user", "bob")
    assert key_id not in migrated_cli.ok("keys", "list", "--user", "alice")


def test_keys_errors_are_clear(migrated_cli: Cli) -> None:
    no_owner = migrated_cli("keys", "create", "k", "--user", "nobody")
    assert no_owner.exit_code == 1
    assert "no user 'nobody'" in no_owner.output
    unknown = migrated_cli("keys", "revoke", "no-such-key")
    assert unknown.exit_code == 1
    assert "no API key 'no-such-key'" in unknown.output
    # User input is printed as it is, never read as console markup.
    markup = migrated_cli("keys", "revoke", "[/red]x")
    assert markup.exit_code == 1
    assert "no API key '[/red]x'" in markup.output


# --- config --------------------------------------------------------------------------


def test_config_show_masks_secrets(cli: Cli) -> None:
    cli.env["YMERA_AUTH__SECRET_KEY"] = "do-not-print-me"
    cli.env["YMERA_SERVER__PORT"] = "9321"
    out = cli.ok("config", "show")
    assert "do-not-print-me" not in out
    assert re.search(r"YMERA_AUTH__SECRET_KEY\s+│\s+\*{8}", out), out
    assert re.search(r"YMERA_SERVER__PORT\s+│\s+9321", out), out
    assert "database: sqlite+aiosqlite:///" in out


def test_config_reference_prints_and_updates_the_table(cli: Cli, tmp_path: Path) -> None:
    from ymera.cli.config import TABLE_BEGIN, TABLE_END, reference_table

    assert cli.ok("config", "reference").strip() == reference_table()
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Settings\n\n{TABLE_BEGIN}\nstale\n{TABLE_END}\n\nafter\n")
    cli.ok("config", "reference", "--update", str(doc))
    text = doc.read_text()
    assert text == f"# Settings\n\n{TABLE_BEGIN}\n{reference_table()}\n{TABLE_END}\n\nafter\n"
    no_markers = tmp_path / "plain.md"
    no_markers.write_text("nothing here\n")
    result = cli("config", "reference", "--update", str(no_markers))
    assert result.exit_code == 1
    assert "markers not found" in result.output


# --- help ----------------------------------------------------------------------------

COMMANDS = [
    (),
    ("serve",),
    ("version",),
    ("db",),
    ("db", "upgrade"),
    ("db", "downgrade"),
    ("db", "current"),
    ("users",),
    ("users", "create"),
    ("users", "list"),
    ("keys",),
    ("keys", "create"),
    ("keys", "list"),
    ("keys", "revoke"),
    ("config",),
    ("config", "show"),
    ("config", "reference"),
    ("worker",),
    ("worker", "run"),
    ("agents",),
    ("agents", "list"),
    ("agents", "show"),
    ("agents", "create"),
    ("agents", "pause"),
    ("agents", "resume"),
    ("agents", "delete"),
    ("tasks",),
    ("tasks", "submit"),
    ("tasks", "get"),
    ("tasks", "list"),
    ("tasks", "cancel"),
    ("tasks", "watch"),
    ("workflows",),
    ("workflows", "create"),
    ("workflows", "list"),
    ("workflows", "show"),
    ("workflows", "run"),
    ("workflows", "watch"),
    ("workflows", "runs"),
    ("workflows", "get"),
    ("workflows", "cancel"),
    ("workflows", "retry"),
    ("chat",),
    ("chat", "list"),
    ("chat", "create"),
    ("chat", "post"),
    ("chat", "history"),
    ("chat", "tail"),
    ("routing",),
    ("routing", "policy"),
    ("routing", "policy", "show"),
    ("routing", "policy", "set"),
    ("routing", "policy", "unset"),
    ("learning",),
    ("learning", "stats"),
    ("learning", "reset"),
    ("knowledge",),
    ("knowledge", "add"),
    ("knowledge", "search"),
    ("knowledge", "similar"),
    ("knowledge", "get"),
    ("knowledge", "delete"),
    ("knowledge", "status"),
    ("workspaces",),
    ("workspaces", "create"),
    ("workspaces", "list"),
    ("workspaces", "delete"),
    ("workspaces", "tree"),
    ("workspaces", "view"),
    ("workspaces", "analysis"),
    ("workspaces", "edit"),
    ("workspaces", "patch"),
    ("workspaces", "edits"),
    ("workspaces", "show"),
    ("workspaces", "approve"),
    ("workspaces", "reject"),
    ("workspaces", "apply"),
    ("workspaces", "revert"),
    ("workspaces", "session"),
    ("workspaces", "diff"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ymera")
def test_help(cli: Cli, command: tuple[str, ...]) -> None:
    out = cli.ok(*command, "--help")
    assert "Usage:" in out
    assert f"ymera {' '.join(command)}".strip() in out or not command


def test_every_command_has_a_help_test(cli: Cli) -> None:
    """Adding a command without adding it to COMMANDS fails here."""
    import typer.main

    from ymera.cli.main import app

    def walk(group: object, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = [prefix]
        for name, sub in getattr(group, "commands", {}).items():
            found += walk(sub, (*prefix, name))
        return found

    assert sorted(walk(typer.main.get_command(app), ())) == sorted(COMMANDS)


def test_invalid_settings_fail_naming_the_variable(cli: Cli) -> None:
    cli.env["YMERA_SERVER__PORT"] = "eighty"
    cli.env["YMERA_LOG__JSON"] = "maybe"
    for args in (("config", "show"), ("db", "current"), ("serve",)):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "invalid settings" in result.output
        assert "YMERA_SERVER__PORT='eighty': Input should be a valid integer" in result.output
        assert "YMERA_LOG__JSON='maybe'" in result.output
        assert "Traceback" not in result.output

"""Run `ymera` commands in-process against a database in a temporary directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from ymera.cli import common
from ymera.cli.main import app


@dataclass
class Cli:
    env: dict[str, str]
    runner: CliRunner

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(
            app, list(args), env=self.env, catch_exceptions=False, prog_name="ymera"
        )

    def ok(self, *args: str) -> str:
        """Run the command, assert it succeeded and return its output."""
        result = self(*args)
        assert result.exit_code == 0, (
            f"ymera {' '.join(args)} -> {result.exit_code}\n{result.output}"
        )
        return result.output


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in list(os.environ):
        if name.startswith("YMERA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env; relative paths land here
    monkeypatch.setattr(common.console, "width", 120)  # a usual terminal
    env = {
        "YMERA_DATA_DIR": str(tmp_path / "data"),
        # A plain sqlite:// URL: the CLI must pick the async driver itself.
        "YMERA_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "YMERA_LOG__LEVEL": "WARNING",
    }
    return Cli(env=env, runner=CliRunner())


@pytest.fixture
def migrated_cli(cli: Cli) -> Cli:
    cli.ok("db", "upgrade")
    return cli

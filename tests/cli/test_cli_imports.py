"""The `ymera` command starts without importing the server or the database layer:
most commands talk to a server over HTTP, and importing those cost every command
(``ymera tasks list``, ``ymera worker run``...) about two seconds."""

from __future__ import annotations

import subprocess
import sys

# Imported only by the commands that need them (`serve`, `db`, `users`, `keys`).
HEAVY = ("ymera.app", "fastapi", "alembic", "ymera.db", "ymera.models", "jwt", "numpy")


def test_the_command_imports_neither_the_server_nor_the_database_layer() -> None:
    code = f"import sys, ymera.cli.main\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == []

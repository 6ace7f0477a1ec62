"""`ymera chat` against a real server."""

from __future__ import annotations

import re

import pytest

from tests.cli.conftest import Cli
from tests.cli.test_agents_cli import api_cli, ok, run
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role

# The CLI renders what the API answers: the API's tests cover both backends.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite-memory"], indirect=True)


@SQLITE_ONLY
async def test_create_post_list_history_tail(cli: Cli, live: LiveServer) -> None:
    await api_cli(cli, live)
    await live.harness.create_user("bob", Role.DEVELOPER)
    created = await ok(cli, "chat", "create", "standup", "-p", "bob")
    found = re.search(r"session (\S+):", created)
    assert found, created
    sid = found.group(1)
    assert "#1 posted" in await ok(cli, "chat", "post", sid, "first")
    assert "#2 posted" in await ok(cli, "chat", "post", sid, "second")
    listed = await ok(cli, "chat", "list")
    assert sid in listed
    assert "standup" in listed
    history = await ok(cli, "chat", "history", sid, "--after", "1")
    assert "second" in history
    assert "first" not in history
    # Resume from #0: both messages, then stop.
    tailed = await ok(cli, "chat", "tail", sid, "--last-seq", "0", "--count", "2")
    assert tailed.index("first") < tailed.index("second")
    refused = await run(cli, "chat", "post", sid, "x", "--to", "no-such-agent")
    assert refused.exit_code == 1
    assert "no-such-agent" in refused.output

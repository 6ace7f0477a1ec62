"""`ymera agents` against a real server (uvicorn on loopback), through the client."""

from __future__ import annotations

import asyncio
import re

from click.testing import Result

from tests.cli.conftest import Cli
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role


async def api_cli(cli: Cli, live: LiveServer, *scopes: str) -> Cli:
    """``cli`` pointed at the live server with a fresh admin API key (optionally scoped)."""
    body: dict[str, object] = {"name": "cli"}
    if scopes:
        body["scopes"] = list(scopes)
    headers = await live.harness.headers(Role.ADMIN)
    key = await live.harness.client.post("/api/v1/api-keys", json=body, headers=headers)
    assert key.status_code == 201, key.text
    cli.env["YMERA_URL"] = live.base_url
    cli.env["YMERA_API_KEY"] = key.json()["key"]
    return cli


async def run(cli: Cli, *args: str) -> Result:
    """Run the command in a thread: the server lives on this test's event loop."""
    return await asyncio.to_thread(cli, *args)


async def ok(cli: Cli, *args: str) -> str:
    return await asyncio.to_thread(cli.ok, *args)


def agent_id(output: str) -> str:
    found = re.search(r"agent id: (\S+)", output)
    assert found, output
    return found.group(1)


async def test_create_list_show_pause_resume_delete(cli: Cli, live: LiveServer) -> None:
    await api_cli(cli, live)
    created = await ok(
        cli, "agents", "create", "writer-1", "--type", "WRITER", "-c", "summarise:0.9",
        "-c", "translate", "--max-concurrency", "3", "--tag", "eu",
    )  # fmt: skip
    assert "created agent writer-1 (OFFLINE)" in created
    aid = agent_id(created)
    await ok(cli, "agents", "create", "tester-1", "--type", "TESTER")

    listed = await ok(cli, "agents", "list")
    assert re.search(rf"{aid}\s+│\s+writer-1\s+│\s+WRITER\s+│\s+OFFLINE\s+│\s+0/3", listed), listed
    assert "summarise:0.9, translate:0.5" in listed
    assert "tester-1" in listed
    only_writers = await ok(cli, "agents", "list", "--type", "WRITER", "--capability", "summarise")
    assert "writer-1" in only_writers
    assert "tester-1" not in only_writers
    assert "writer-1" not in await ok(cli, "agents", "list", "--status", "IDLE")

    shown = await ok(cli, "agents", "show", aid, "--window", "5m")
    assert re.search(r"status\s+│\s+OFFLINE", shown), shown
    assert re.search(r"tags\s+│\s+eu", shown), shown
    assert re.search(r"tasks \(5m\)\s+│\s+0 ok / 0 failed", shown), shown

    assert "writer-1: PAUSED" in await ok(cli, "agents", "pause", aid, "--reason", "upgrade")
    stored = await live.harness.client.get(
        f"/api/v1/agents/{aid}", headers=await live.harness.headers(Role.ADMIN)
    )
    assert (stored.json()["status"], stored.json()["status_reason"]) == ("PAUSED", "upgrade")
    assert "writer-1: OFFLINE" in await ok(cli, "agents", "resume", aid)  # silent: OFFLINE

    assert f"deleted {aid}" in await ok(cli, "agents", "delete", aid)
    assert "writer-1" not in await ok(cli, "agents", "list")
    gone = await run(cli, "agents", "show", aid)
    assert gone.exit_code == 1
    assert "not found" in gone.output
    assert "Traceback" not in gone.output


async def test_api_errors_exit_1_with_the_problem_message(cli: Cli, live: LiveServer) -> None:
    await api_cli(cli, live, "agents:read")
    denied = await run(cli, "agents", "create", "nope")
    assert denied.exit_code == 1
    assert "agents:write" in denied.output, denied.output

    await api_cli(cli, live)
    await ok(cli, "agents", "create", "dup")
    taken = await run(cli, "agents", "create", "dup")
    assert taken.exit_code == 1
    assert re.search(r"error: .*dup", taken.output), taken.output

    del cli.env["YMERA_API_KEY"]
    anonymous = await run(cli, "agents", "list")
    assert anonymous.exit_code == 1
    assert "set YMERA_API_KEY" in anonymous.output

    bad_key = await run(cli, "agents", "list", "--api-key", "ymk_wrong")
    assert bad_key.exit_code == 1
    assert "error:" in bad_key.output
    assert "set YMERA_API_KEY" not in bad_key.output


def test_unreachable_server_is_a_clear_error(cli: Cli) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = cli("agents", "list", "--url", url, "--api-key", "ymk_x")
    assert result.exit_code == 1
    assert f"cannot reach YMERA at {url}" in result.output


def test_bad_capability_is_refused_before_any_request(cli: Cli) -> None:
    result = cli("agents", "create", "a", "-c", "x:abc", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert "NAME:PROFICIENCY" in result.output

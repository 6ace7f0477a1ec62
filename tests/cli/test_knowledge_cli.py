"""`ymera knowledge`, `ymera routing policy` and `ymera learning` against a real
server (through the HTTP API, as a user would)."""

from __future__ import annotations

import re

import pytest

from tests.cli.conftest import Cli
from tests.cli.test_agents_cli import api_cli, ok, run
from tests.fixtures.backends import Backend
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role
from ymera.config import Settings
from ymera.routing.engine import RoutingEngine
from ymera.tasks import hooks


@pytest.fixture
def settings(backend: Backend) -> Settings:
    """Text ranking only, with or without the semantic extra installed."""
    return backend.settings(knowledge={"semantic": False})


def experience_id(output: str) -> str:
    found = re.search(r"experience id: (\S+)", output)
    assert found, output
    return found.group(1)


async def test_knowledge_add_search_similar_get_delete(cli: Cli, live: LiveServer) -> None:
    await api_cli(cli, live)
    first = experience_id(
        await ok(
            cli, "knowledge", "add", "deploy", "Rolled back a canary after the error budget burned",
            "--notes", "watch the burn rate alerts", "--outcome", "failed",
        )
    )  # fmt: skip
    second = experience_id(
        await ok(cli, "knowledge", "add", "docs", "Wrote the release notes for the canary")
    )
    found = await ok(cli, "knowledge", "search", "canary budget")
    assert first in found
    assert second not in found
    assert "FAILED" in found
    newest = await ok(cli, "knowledge", "search", "--limit", "1")
    assert second in newest
    assert "more: --cursor" in newest
    assert first not in newest
    filtered = await ok(cli, "knowledge", "search", "canary", "--type", "docs")
    assert second in filtered
    assert first not in filtered
    like = await ok(cli, "knowledge", "similar", "canary rollout went wrong", "--type", "deploy")
    assert first in like
    assert second not in like
    shown = await ok(cli, "knowledge", "get", first)
    assert "watch the burn rate alerts" in shown
    assert "deploy" in shown
    status = await ok(cli, "knowledge", "status")
    assert "2 (0 embedded)" in status
    assert await ok(cli, "knowledge", "delete", first) == f"deleted experience {first}\n"
    gone = await run(cli, "knowledge", "get", first)
    assert gone.exit_code == 1
    assert "not found" in gone.stderr
    neither = await run(cli, "knowledge", "similar")
    assert neither.exit_code == 2


async def test_routing_policy_and_learning(cli: Cli, live: LiveServer) -> None:
    await api_cli(cli, live)
    assert "global policy: learned (ACTIVE)" in await ok(
        cli, "routing", "policy", "set", "learned", "--mode", "active",
        "--params", '{"exploration": 0.5}',
    )  # fmt: skip
    assert "review policy: weighted (PASSIVE)" in await ok(
        cli, "routing", "policy", "set", "weighted", "--type", "review",
        "--params", '{"weights": {"a1": 2}}',
    )  # fmt: skip
    engine: RoutingEngine = live.harness.state.extras["routing"]
    assert engine.policy_for("review").strategy == "weighted"
    shown = await ok(cli, "routing", "policy", "show")
    assert re.search(r"\* \(global\)\s+│\s+learned\s+│\s+ACTIVE", shown), shown
    assert re.search(r"review\s+│\s+weighted", shown), shown
    bad = await run(cli, "routing", "policy", "set", "psychic")
    assert bad.exit_code == 1
    assert await ok(cli, "routing", "policy", "unset", "review") == "removed the policy of review\n"
    assert engine.policy_for("review").strategy == "learned"
    missing = await run(cli, "routing", "policy", "unset", "review")
    assert missing.exit_code == 1

    # Learned statistics: two outcomes of one agent, then a reset.
    now = live.harness.state.clock.now()
    admin = await live.harness.headers(Role.ADMIN)
    agent = (
        await live.harness.client.post("/api/v1/agents", json={"name": "a1"}, headers=admin)
    ).json()
    async with live.harness.state.db.transaction() as session:
        for ok_ in (True, False):
            await hooks.notify_outcome(
                session,
                hooks.Outcome(
                    agent_id=agent["id"], task_type="review", at=now, success=ok_, latency=1.0
                ),
            )
    stats = await ok(cli, "learning", "stats", "--type", "review")
    assert re.search(rf"{agent['id']}\s+│\s+review\s+│\s+2\s+│", stats), stats
    assert "half-life 86400s" in stats
    assert agent["id"] not in await ok(cli, "learning", "stats", "--type", "other")
    assert "forgot 1 learned statistics (agent" in await ok(
        cli, "learning", "reset", "--agent", agent["id"], "--yes"
    )
    assert agent["id"] not in await ok(cli, "learning", "stats")

"""`ymera agents`: the agent registry, through the HTTP API (``ymera.client``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from ymera.agents.schemas import AgentType, ConnectionMode
from ymera.agents.status import AgentStatus
from ymera.cli.common import console, fail, table
from ymera.client import Client, YmeraAPIError

app = typer.Typer(
    help="Manage agents through the API (--url / YMERA_URL, --api-key / YMERA_API_KEY).",
    no_args_is_help=True,
)

DEFAULT_URL = "http://127.0.0.1:8000"

Url = Annotated[
    str, typer.Option("--url", envvar="YMERA_URL", help="The YMERA server.", show_default=True)
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="YMERA_API_KEY",
        help="API key (ymk_...) sent as a bearer token.",
        show_default=False,
    ),
]


@contextmanager
def api(url: str, api_key: str | None) -> Iterator[Client]:
    """A client for the command; API and connection errors end the command with
    the server's message (status 1)."""
    try:
        with Client(url, api_key=api_key) as client:
            yield client
    except YmeraAPIError as exc:
        hint = ""
        if exc.status == 401 and not api_key:
            hint = " (pass --api-key or set YMERA_API_KEY; `ymera keys create` makes one)"
        fail(f"{exc.detail}{hint}")
    except httpx.HTTPError as exc:
        fail(f"cannot reach YMERA at {url}: {exc}")


def when(value: str | None) -> str:
    """An API timestamp as ``YYYY-MM-DD HH:MM:SS`` (``-`` when missing)."""
    return value[:19].replace("T", " ") if value else "-"


def details(pairs: list[tuple[str, Any]]) -> None:
    """Print a two-column field/value table."""
    rows = table("field", "value")
    for name, value in pairs:
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        rows.add_row(name, escape("-" if value is None else str(value)))
    console.print(rows)


def _capabilities(agent: dict[str, Any]) -> str:
    return ", ".join(f"{c['name']}:{c['proficiency']:g}" for c in agent["capabilities"]) or "-"


def _parse_capability(text: str) -> dict[str, Any]:
    name, _, proficiency = text.partition(":")
    if not proficiency:
        return {"name": name}
    try:
        return {"name": name, "proficiency": float(proficiency)}
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: expected NAME or NAME:PROFICIENCY (0..1)") from exc


@app.command("list")
def list_agents(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    type: Annotated[list[AgentType] | None, typer.Option("--type", help="Repeatable.")] = None,
    status: Annotated[
        list[AgentStatus] | None, typer.Option("--status", help="Repeatable.")
    ] = None,
    capability: Annotated[str | None, typer.Option(help="Having this capability.")] = None,
    tag: Annotated[str | None, typer.Option(help="Having this tag.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 200,
) -> None:
    """List agents with their status, load and capabilities."""
    rows = table("id", "name", "type", "status", "load", "capabilities")
    with api(url, api_key) as client:
        agents = client.iter_agents(
            type=[t.value for t in type or []] or None,
            status=[s.value for s in status or []] or None,
            capability=capability,
            tag=tag,
            limit=min(limit, 500),
        )
        for count, agent in enumerate(agents):
            if count >= limit:
                break
            rows.add_row(
                agent["id"],
                escape(agent["name"]),
                agent["type"],
                agent["status"],
                f"{agent['current_load']}/{agent['max_concurrency']}",
                escape(_capabilities(agent)),
            )
    console.print(rows)


@app.command()
def show(
    agent_id: Annotated[str, typer.Argument(help="Id of the agent.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    window: Annotated[str, typer.Option(help="Metrics window: 5m, 1h, 24h or 7d.")] = "1h",
) -> None:
    """Show one agent and its metrics over a window."""
    with api(url, api_key) as client:
        agent = client.get_agent(agent_id)
        metrics = client.agent_metrics(agent_id, window)
    details(
        [
            ("id", agent["id"]),
            ("name", agent["name"]),
            ("type", agent["type"]),
            ("status", agent["status"]),
            ("status reason", agent["status_reason"]),
            ("load", f"{agent['current_load']}/{agent['max_concurrency']}"),
            ("capabilities", _capabilities(agent)),
            ("tags", ", ".join(agent["tags"]) or "-"),
            ("connection", agent["connection_mode"]),
            ("endpoint", agent["endpoint_url"]),
            ("description", agent["description"] or "-"),
            ("last heartbeat", when(agent["last_heartbeat_at"])),
            ("created", when(agent["created_at"])),
            (f"tasks ({window})", f"{metrics['successes']} ok / {metrics['failures']} failed"),
            ("success rate", metrics["success_rate"]),
            (
                "latency p50 / p95 (s)",
                f"{metrics['latency_p50_seconds']} / {metrics['latency_p95_seconds']}",
            ),
            ("quality score", metrics["quality_score"]),
        ]
    )


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Unique name of the agent.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    type: Annotated[AgentType, typer.Option("--type")] = AgentType.CUSTOM,
    capability: Annotated[
        list[str] | None,
        typer.Option("--capability", "-c", help="NAME or NAME:PROFICIENCY (0..1); repeatable."),
    ] = None,
    max_concurrency: Annotated[int, typer.Option(min=1, help="Tasks at once.")] = 1,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Repeatable.")] = None,
    description: Annotated[str, typer.Option()] = "",
    connection_mode: Annotated[
        ConnectionMode, typer.Option("--connection-mode", help="How YMERA reaches the agent.")
    ] = ConnectionMode.WORKER,
    endpoint_url: Annotated[
        str | None, typer.Option(help="The agent's URL (http and a2a agents).")
    ] = None,
) -> None:
    """Register an agent (it is OFFLINE until its worker connects or it heartbeats)."""
    fields: dict[str, Any] = {
        "type": type.value,
        "capabilities": [_parse_capability(c) for c in capability or []],
        "max_concurrency": max_concurrency,
        "tags": tag or [],
        "description": description,
        "connection_mode": connection_mode.value,
    }
    if endpoint_url:
        fields["endpoint_url"] = endpoint_url
    with api(url, api_key) as client:
        agent = client.create_agent(name, **fields)
    console.print(f"created agent {escape(agent['name'])} ({agent['status']})")
    console.print(f"agent id: {agent['id']}")


@app.command()
def pause(
    agent_id: Annotated[str, typer.Argument(help="Id of the agent.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept as the status reason).")] = None,
) -> None:
    """Stop routing work to an agent; its running tasks continue."""
    with api(url, api_key) as client:
        agent = client.pause_agent(agent_id, reason)
    console.print(f"{escape(agent['name'])}: {agent['status']}")


@app.command()
def resume(
    agent_id: Annotated[str, typer.Argument(help="Id of the agent.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Route work to a paused agent again."""
    with api(url, api_key) as client:
        agent = client.resume_agent(agent_id)
    console.print(f"{escape(agent['name'])}: {agent['status']}")


@app.command()
def delete(
    agent_id: Annotated[str, typer.Argument(help="Id of the agent.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    force: Annotated[
        bool, typer.Option(help="Delete even with running tasks (they are re-queued).")
    ] = False,
) -> None:
    """Delete an agent (refused while it runs tasks, unless --force); its keys are revoked."""
    with api(url, api_key) as client:
        client.delete_agent(agent_id, force=force)
    console.print(f"deleted {agent_id}")

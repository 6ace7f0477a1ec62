"""`ymera tasks`: submit and follow tasks, through the HTTP API (``ymera.client``)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ymera.cli.agents import DEFAULT_URL, ApiKey, Url, api, details, when
from ymera.cli.common import console, fail, table
from ymera.client import Client

app = typer.Typer(
    help="Submit and follow tasks through the API (--url / YMERA_URL, --api-key / YMERA_API_KEY).",
    no_args_is_help=True,
)

FINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "DEAD")


def _json_object(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {text[1:]}: {exc.strerror}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("the input must be a JSON object")
    return value


def _task_rows(task: dict[str, Any]) -> list[tuple[str, Any]]:
    progress = task["progress"]
    if progress is not None:
        progress = f"{progress:g}%" + (
            f" {task['progress_message']}" if task["progress_message"] else ""
        )
    return [
        ("id", task["id"]),
        ("type", task["type"]),
        ("status", task["status"]),
        ("attempt", f"{task['attempt']}/{task['max_attempts']}"),
        ("agent", task["agent_id"]),
        ("progress", progress),
        ("created", when(task["created_at"])),
        ("finished", when(task["finished_at"])),
        ("result", task["result"]),
        ("error", task["error"]),
    ]


def _view(task: dict[str, Any], elapsed: float) -> Table:
    rows = table("field", "value")
    rows.title = f"task {task['id']} · {elapsed:.1f}s"
    for name, value in _task_rows(task):
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        rows.add_row(name, escape("-" if value is None else str(value)))
    return rows


def _watch(client: Client, task_id: str, interval: float, timeout: float | None) -> dict[str, Any]:
    start = time.monotonic()
    task = client.get_task(task_id)
    with Live(_view(task, 0), console=console, auto_refresh=False) as live:
        while task["status"] not in FINAL:
            elapsed = time.monotonic() - start
            if timeout is not None and elapsed >= timeout:
                live.update(_view(task, elapsed), refresh=True)
                break
            time.sleep(interval)
            task = client.get_task(task_id)
            live.update(_view(task, time.monotonic() - start), refresh=True)
    if not console.is_terminal:
        console.line()  # Live leaves its last frame without a newline when piped
    return task


def _finish(task: dict[str, Any]) -> None:
    if task["status"] == "SUCCEEDED":
        console.print(f"task {task['id']} SUCCEEDED")
        return
    if task["status"] not in FINAL:
        fail(f"task {task['id']} is still {task['status']} (timed out watching)")
    message = (task["error"] or {}).get("message") if task["error"] else None
    fail(f"task {task['id']} {task['status']}" + (f": {message}" if message else ""))


@app.command()
def submit(
    type: Annotated[str, typer.Argument(help="Task type, e.g. summarise.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    input: Annotated[
        str, typer.Option("--input", "-i", help="JSON object, or @FILE holding one.")
    ] = "{}",
    capability: Annotated[
        list[str] | None,
        typer.Option("--capability", "-c", help="Required capability; repeatable."),
    ] = None,
    priority: Annotated[int, typer.Option(min=0, max=9, help="9 is most urgent.")] = 5,
    agent: Annotated[
        list[str] | None, typer.Option("--agent", help="Preferred agent (id or name); repeatable.")
    ] = None,
    only: Annotated[
        bool,
        typer.Option("--only", help="Only the --agent agents may take it (it waits for one)."),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="Execution timeout per attempt, seconds.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat-safe submit: same key, same task.")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Then follow it like `ymera tasks watch`.")
    ] = False,
) -> None:
    """Submit a task and print its id."""
    fields: dict[str, Any] = {
        "required_capabilities": capability or [],
        "priority": priority,
        "preferred_agents": agent or [],
    }
    if only:
        if not agent:
            fail("--only needs at least one --agent")
        fields["preferred_only"] = True
    if timeout is not None:
        fields["timeout"] = timeout
    body = _json_object(input)
    with api(url, api_key) as client:
        task = client.submit_task(type, body, idempotency_key=idempotency_key, **fields)
        console.print(f"task id: {task['id']} ({task['status']})")
        if watch:
            task = _watch(client, task["id"], 0.25, None)
    if watch:
        _finish(task)


@app.command()
def get(
    task_id: Annotated[str, typer.Argument(help="Id of the task.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Show one task with its result or error."""
    with api(url, api_key) as client:
        task = client.get_task(task_id)
    details(_task_rows(task))


@app.command("list")
def list_tasks(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    status: Annotated[list[str] | None, typer.Option("--status", help="Repeatable.")] = None,
    type: Annotated[list[str] | None, typer.Option("--type", help="Repeatable.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Run by this agent id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Newest N tasks.")] = 50,
) -> None:
    """List tasks, newest first."""
    with api(url, api_key) as client:
        page = client.list_tasks(
            status=[s.upper() for s in status or []] or None,
            type=type or None,
            agent_id=agent,
            limit=limit,
        )
    rows = table("id", "type", "status", "attempt", "agent", "created")
    for task in page["items"]:
        rows.add_row(
            task["id"],
            escape(task["type"]),
            task["status"],
            f"{task['attempt']}/{task['max_attempts']}",
            task["agent_id"] or "-",
            when(task["created_at"]),
        )
    console.print(rows)


@app.command()
def cancel(
    task_id: Annotated[str, typer.Argument(help="Id of the task.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    reason: Annotated[str | None, typer.Option(help="Why (sent to the agent).")] = None,
) -> None:
    """Cancel a PENDING, ASSIGNED or RUNNING task."""
    with api(url, api_key) as client:
        task = client.cancel_task(task_id, reason)
    console.print(f"{task['id']}: {task['status']}")


@app.command()
def watch(
    task_id: Annotated[str, typer.Argument(help="Id of the task.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 0.5,
    timeout: Annotated[
        float | None, typer.Option(help="Give up after this many seconds (exit 1).")
    ] = None,
) -> None:
    """Follow a task live until it is final; exit 0 if it SUCCEEDED, 1 otherwise."""
    with api(url, api_key) as client:
        task = _watch(client, task_id, interval, timeout)
    _finish(task)

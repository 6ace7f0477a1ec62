"""`ymera workflows`: define workflows (YAML or JSON files), run them and watch a
run's steps live, through the HTTP API (``ymera.client``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from ymera.cli.agents import DEFAULT_URL, ApiKey, Url, api, when
from ymera.cli.common import console, fail, table
from ymera.cli.tasks import _json_object
from ymera.client import Client, ValidationError

app = typer.Typer(
    help="Define, run and watch workflows through the API (--url / YMERA_URL, "
    "--api-key / YMERA_API_KEY).",
    no_args_is_help=True,
)

FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
STYLE = {
    "PENDING": "dim",
    "RUNNING": "yellow",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "SKIPPED": "dim",
    "CANCELLED": "magenta",
}
MARK = {
    "PENDING": "·",
    "RUNNING": "…",
    "SUCCEEDED": "✓",
    "FAILED": "✗",
    "SKIPPED": "-",
    "CANCELLED": "⊘",
}


def _load_definition(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from exc
    try:
        value = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{path} is not YAML or JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{path} must hold a mapping (the workflow definition)")
    return value


def _problems(exc: ValidationError) -> None:
    """Print each problem of an invalid definition with its path, then exit 1."""
    problems = exc.body.get("problems")
    errors = exc.body.get("errors")
    lines = [f"  {p['path']}: {p['message']}" for p in problems or []]
    lines += [
        f"  {'.'.join(str(x) for x in e.get('loc', []))}: {e.get('msg')}" for e in errors or []
    ]
    fail("invalid workflow\n" + "\n".join(lines) if lines else exc.detail)


@app.command()
def create(
    file: Annotated[Path, typer.Argument(help="The definition, YAML or JSON.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only validate it; store nothing.")
    ] = False,
) -> None:
    """Create a workflow (or the next version of one) from a YAML or JSON file."""
    definition = _load_definition(file)
    with api(url, api_key) as client:
        try:
            if dry_run:
                client.validate_workflow(definition)
                console.print(f"{escape(str(definition.get('name')))}: valid")
                return
            workflow = client.create_workflow(definition)
        except ValidationError as exc:
            _problems(exc)
    console.print(
        f"workflow {escape(workflow['name'])} version {workflow['version']} (id {workflow['id']})"
    )


@app.command("list")
def list_workflows(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    name: Annotated[str | None, typer.Option(help="Only this workflow's versions.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """List workflow definitions, newest first."""
    with api(url, api_key) as client:
        page = client.list_workflows(name=name, limit=limit)
    rows = table("id", "name", "version", "steps", "created")
    for w in page["items"]:
        rows.add_row(
            w["id"],
            escape(w["name"]),
            str(w["version"]),
            str(len(w["definition"].get("steps", []))),
            when(w["created_at"]),
        )
    console.print(rows)


@app.command()
def show(
    workflow: Annotated[str, typer.Argument(help="A name (latest version) or an id.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Print a workflow's definition as YAML."""
    with api(url, api_key) as client:
        found = client.get_workflow(workflow)
    console.print(f"# {found['name']} version {found['version']} ({found['id']})")
    console.print(escape(yaml.safe_dump(found["definition"], sort_keys=False)), end="")


@app.command()
def run(
    workflow: Annotated[str, typer.Argument(help="A name (latest version) or an id.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    input: Annotated[
        str, typer.Option("--input", "-i", help="JSON object, or @FILE holding one.")
    ] = "{}",
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Then follow it like `ymera workflows watch`.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --watch: give up after this many seconds.")
    ] = None,
) -> None:
    """Start a run and print its id (with --watch: follow it; exit 0 only if it SUCCEEDED)."""
    body = _json_object(input)
    with api(url, api_key) as client:
        started = client.run_workflow(workflow, body)
        console.print(f"run id: {started['id']} ({started['status']})")
        final = _watch(client, started["id"], 0.25, timeout) if watch else None
    if final is not None:
        _finish(final)


@app.command()
def watch(
    run_id: Annotated[str, typer.Argument(help="Id of the run.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 0.5,
    timeout: Annotated[
        float | None, typer.Option(help="Give up after this many seconds (exit 1).")
    ] = None,
) -> None:
    """Follow a run as a live tree of its steps until it is final; exit 0 if it
    SUCCEEDED, 1 otherwise."""
    with api(url, api_key) as client:
        final = _watch(client, run_id, interval, timeout)
    _finish(final)


@app.command()
def runs(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    status: Annotated[list[str] | None, typer.Option("--status", help="Repeatable.")] = None,
    workflow: Annotated[str | None, typer.Option(help="A workflow name or id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """List runs, newest first."""
    with api(url, api_key) as client:
        page = client.list_workflow_runs(
            status=[s.upper() for s in status or []] or None, workflow=workflow, limit=limit
        )
    rows = table("id", "workflow", "status", "created", "finished")
    for r in page["items"]:
        rows.add_row(
            r["id"],
            escape(f"{r['workflow_name']} v{r['workflow_version']}"),
            r["status"],
            when(r["created_at"]),
            when(r["finished_at"]),
        )
    console.print(rows)


@app.command()
def get(
    run_id: Annotated[str, typer.Argument(help="Id of the run.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Show a run as a tree of its steps, with its output or error."""
    with api(url, api_key) as client:
        found = client.get_workflow_run(run_id)
    console.print(_view(found, None))


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="Id of the run.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    reason: Annotated[str | None, typer.Option(help="Why (sent to the agents).")] = None,
) -> None:
    """Cancel a RUNNING run and its running tasks."""
    with api(url, api_key) as client:
        found = client.cancel_workflow_run(run_id, reason)
    console.print(f"{found['id']}: {found['status']}")


@app.command()
def retry(
    run_id: Annotated[str, typer.Argument(help="Id of the run.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Run a FAILED run again from its failed steps."""
    with api(url, api_key) as client:
        found = client.retry_workflow_run(run_id)
    console.print(f"{found['id']}: {found['status']}")


# --- the live tree -------------------------------------------------------------------------


def _label(step: dict[str, Any]) -> Text:
    status = step["status"]
    label = Text(f"{MARK.get(status, '?')} {step['key']} ", style=STYLE.get(status, ""))
    label.append(status, style=STYLE.get(status, ""))
    extra = []
    if step["kind"] == "group" and (branch := step["detail"].get("branch")):
        extra.append(f"branch {branch}")
    if step["agent_id"]:
        extra.append(f"agent …{step['agent_id'][-8:]}")
    if step["detail"].get("recovered"):
        extra.append("recovered by its fallback")
    if status == "FAILED" and step["error"]:
        extra.append(str(step["error"].get("message", ""))[:120])
    if extra:
        label.append("  " + " · ".join(extra), style="dim")
    return label


def _view(found: dict[str, Any], elapsed: float | None) -> Group:
    status = found["status"]
    title = Text(f"run {found['id']} · {found['workflow_name']} v{found['workflow_version']} ")
    title.append(status, style=STYLE.get(status, "bold"))
    if elapsed is not None:
        title.append(f" · {elapsed:.1f}s", style="dim")
    tree = Tree(title)
    branches: dict[str | None, Tree] = {None: tree}
    for step in found["steps"]:
        parent = branches.get(step["parent_key"], tree)
        branches[step["key"]] = parent.add(_label(step))
    parts: list[Any] = [tree]
    if status == "SUCCEEDED":
        output = json.dumps(found["output"], ensure_ascii=False, sort_keys=True)
        parts.append(Text("output: " + output[:2000]))
    elif found["error"]:
        parts.append(Text(f"error: {found['error'].get('message')}", style="red"))
    return Group(*parts)


def _watch(client: Client, run_id: str, interval: float, timeout: float | None) -> dict[str, Any]:
    start = time.monotonic()
    found = client.get_workflow_run(run_id)
    with Live(_view(found, 0), console=console, auto_refresh=False) as live:
        while found["status"] not in FINAL:
            elapsed = time.monotonic() - start
            if timeout is not None and elapsed >= timeout:
                break
            time.sleep(interval)
            found = client.get_workflow_run(run_id)
            live.update(_view(found, time.monotonic() - start), refresh=True)
        live.update(_view(found, time.monotonic() - start), refresh=True)
    if not console.is_terminal:
        console.line()
    return found


def _finish(found: dict[str, Any]) -> None:
    if found["status"] == "SUCCEEDED":
        console.print(f"run {found['id']} SUCCEEDED")
        return
    if found["status"] not in FINAL:
        fail(f"run {found['id']} is still {found['status']} (timed out watching)")
    message = (found["error"] or {}).get("message") if found["error"] else None
    fail(f"run {found['id']} {found['status']}" + (f": {message}" if message else ""))

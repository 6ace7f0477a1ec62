"""`ymera workspaces`: code workspaces, their edits and review, through the HTTP API.

Every command is one raw request (``Client.request``) to ``/api/v1/workspaces``;
diffs are fetched as the server sends them (``text/x-diff``) and written to stdout
byte for byte, so ``git apply`` takes them. The commands that change files are in
:mod:`ymera.cli.workspace_edits`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ymera.cli import workspace_edits
from ymera.cli.agents import DEFAULT_URL, ApiKey, Url, details, when
from ymera.cli.common import console, table
from ymera.cli.workspace_api import (
    API,
    EditId,
    WorkspaceId,
    edit_line,
    fetch_raw,
    workspace_api,
)
from ymera.cli.workspace_edits import Title
from ymera.code.status import EditStatus

app = typer.Typer(
    help="Code workspaces: files, edits, review and diffs, through the API "
    "(--url / YMERA_URL, --api-key / YMERA_API_KEY).",
    no_args_is_help=True,
)
app.command()(workspace_edits.edit)
app.command()(workspace_edits.patch)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Name of the workspace.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    archive: Annotated[
        Path | None,
        typer.Option(help="Unpack this zip or tar archive (gz, bz2, xz) into it.", dir_okay=False),
    ] = None,
    git: Annotated[
        str | None,
        typer.Option(
            help="Clone this local repository (a path on the server, under "
            "YMERA_CODE__GIT_ALLOWED_ROOTS; a relative one is taken from here)."
        ),
    ] = None,
    ref: Annotated[str | None, typer.Option(help="With --git: the branch or tag.")] = None,
    init_git: Annotated[
        bool, typer.Option("--init-git", help="Make it a git repository (empty or archive).")
    ] = False,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a workspace: empty, from an archive, or cloned from a local git repository."""
    if archive is not None and git is not None:
        raise typer.BadParameter("give --archive or --git, not both")
    with workspace_api(url, api_key) as client:
        if archive is not None:
            try:
                data = archive.read_bytes()
            except OSError as exc:
                raise typer.BadParameter(f"cannot read {archive}: {exc.strerror}") from exc
            params = {"name": name, "description": description, "init_git": init_git}
            made = client.request(
                "POST",
                f"{API}/archive",
                params=params,
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            ws = made["workspace"]
            console.print(
                f"unpacked {made['files']} files, {made['directories']} directories "
                f"({made['format']}, {made['total_bytes']} bytes)"
            )
        elif git is not None:
            body: dict[str, Any] = {
                "name": name,
                "description": description,
                "source": "git",
                "git_path": str(Path(git).expanduser().absolute()),
            }
            if ref:
                body["git_ref"] = ref
            ws = client.request("POST", API, json=body)
        else:
            body = {"name": name, "description": description, "init_git": init_git}
            ws = client.request("POST", API, json=body)
    git_note = " (git)" if ws["is_git"] else ""
    console.print(f"created workspace {escape(ws['name'])}{git_note}")
    console.print(f"workspace id: {ws['id']}")


@app.command("list")
def list_workspaces(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Newest N workspaces.")] = 50,
) -> None:
    """List workspaces, newest first."""
    with workspace_api(url, api_key) as client:
        page = client.request("GET", API, params={"limit": limit})
    rows = table("id", "name", "source", "git", "edits", "created")
    for ws in page["items"]:
        rows.add_row(
            ws["id"],
            escape(ws["name"]),
            ws["source"],
            "yes" if ws["is_git"] else "no",
            str(ws["edit_count"]),
            when(ws["created_at"]),
        )
    console.print(rows)


@app.command()
def delete(workspace_id: WorkspaceId, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Delete a workspace with its files, edits and sessions (its owner or an admin)."""
    with workspace_api(url, api_key) as client:
        client.request("DELETE", f"{API}/{workspace_id}")
    console.print(f"deleted {workspace_id}")


@app.command()
def tree(
    workspace_id: WorkspaceId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    path: Annotated[str, typer.Option(help="Only below this directory.")] = "",
) -> None:
    """Every file (size, sha256), directory and symlink (target) of a workspace."""
    with workspace_api(url, api_key) as client:
        listing = client.request("GET", f"{API}/{workspace_id}/tree", params={"path": path})
    rows = table("path", "type", "size", "sha256 / target")
    for entry in listing["entries"]:
        rows.add_row(
            escape(entry["path"]),
            entry["type"],
            "-" if entry["size"] is None else str(entry["size"]),
            escape(entry["sha256"] or entry["target"] or "-"),
        )
    console.print(rows)
    if listing["truncated"]:
        console.print("(truncated at YMERA_CODE__MAX_TREE_ENTRIES)")


def _range(text: str | None) -> dict[str, int]:
    """``--range START:END`` as the view's query (END empty or -1: to the end)."""
    if text is None:
        return {}
    start, sep, end = text.partition(":")
    try:
        if sep:
            return {"start": int(start or 1), "end": int(end or -1)}
    except ValueError:
        pass
    raise typer.BadParameter(f"{text!r}: expected START:END (END empty or -1: to the end)")


@app.command()
def view(
    workspace_id: WorkspaceId,
    path: Annotated[str, typer.Argument(help="A file, or a directory (. for the root).")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    range: Annotated[
        str | None,
        typer.Option("--range", help="Lines START:END (1-based; END empty: to the end)."),
    ] = None,
) -> None:
    """A file's numbered lines with its sha256 (for --expected-hash), or a directory."""
    params = {"path": "" if path == "." else path, **_range(range)}
    with workspace_api(url, api_key) as client:
        shown = client.request("GET", f"{API}/{workspace_id}/view", params=params)
    if shown["kind"] == "file":
        typer.echo(f"# {shown['path']} · {shown['total_lines']} lines · sha256 {shown['sha256']}")
    if shown["content"]:
        typer.echo(shown["content"])


@app.command()
def analysis(
    workspace_id: WorkspaceId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    path: Annotated[
        list[str] | None, typer.Option("--path", help="Only these files; repeatable.")
    ] = None,
) -> None:
    """Syntax errors, lint findings (ruff) and complexity (radon) of a workspace."""
    with workspace_api(url, api_key) as client:
        report = client.request(
            "GET", f"{API}/{workspace_id}/analysis", params={"path": path or None}
        )
    rows = table("where", "severity", "code", "message", "tool")
    for f in report["findings"]:
        rows.add_row(
            escape(f"{f['path']}:{f['line']}:{f['column']}"),
            f["severity"],
            escape(f["code"]),
            escape(f["message"]),
            f["tool"],
        )
    console.print(rows)
    counts = ", ".join(f"{n} {severity}" for severity, n in sorted(report["counts"].items()))
    console.print(f"{len(report['findings'])} findings" + (f" ({counts})" if counts else ""))
    for skipped, why in sorted(report["skipped"].items()):
        console.print(f"skipped {escape(skipped)}: {escape(why)}")
    for error in report["tool_errors"]:
        console.print(f"tool error: {escape(error)}")


@app.command()
def edits(
    workspace_id: WorkspaceId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    status: Annotated[list[EditStatus] | None, typer.Option("--status", help="Repeatable.")] = None,
    session: Annotated[str | None, typer.Option(help="Only this session's edits.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Newest N edits.")] = 50,
) -> None:
    """A workspace's edits, newest first."""
    params = {
        "status": [s.value for s in status or []] or None,
        "session_id": session,
        "limit": limit,
    }
    with workspace_api(url, api_key) as client:
        page = client.request("GET", f"{API}/{workspace_id}/edits", params=params)
    rows = table("id", "#", "status", "type", "source", "files", "author", "created")
    for e in page["items"]:
        rows.add_row(
            e["id"],
            str(e["number"]),
            e["status"],
            e["type"],
            e["operation"] or e["source"],
            escape(", ".join(f["path"] for f in e["files"])),
            escape(e["author"]["name"] or e["author"]["id"]),
            when(e["created_at"]),
        )
    console.print(rows)


@app.command()
def show(
    workspace_id: WorkspaceId, edit_id: EditId, url: Url = DEFAULT_URL, api_key: ApiKey = None
) -> None:
    """One edit: its status, files, review and the problems it introduced."""
    with workspace_api(url, api_key) as client:
        e = client.request("GET", f"{API}/{workspace_id}/edits/{edit_id}")
    analysis = e["analysis"] or {}
    details(
        [
            ("id", e["id"]),
            ("number", e["number"]),
            ("status", e["status"]),
            ("type / priority", f"{e['type']} / {e['priority']}"),
            ("title", e["title"] or "-"),
            ("source", e["operation"] or e["source"]),
            ("author", e["author"]["name"] or e["author"]["id"]),
            ("files", ", ".join(f"{f['path']} ({f['change']})" for f in e["files"])),
            ("session", e["session_id"]),
            ("reviewed", f"{when(e['reviewed_at'])} {e['review_comment']}".strip()),
            ("applied", when(e["applied_at"])),
            ("introduced", len(analysis.get("introduced", []))),
            ("fixed", len(analysis.get("fixed", []))),
            ("created", when(e["created_at"])),
        ]
    )


def _transition(
    url: str,
    api_key: str | None,
    workspace_id: str,
    edit_id: str,
    action: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    with workspace_api(url, api_key) as client:
        edit: dict[str, Any] = client.request(
            "POST", f"{API}/{workspace_id}/edits/{edit_id}/{action}", json=body
        )
    return edit


Comment = Annotated[str, typer.Option(help="A review comment.")]


@app.command()
def approve(
    workspace_id: WorkspaceId,
    edit_id: EditId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    comment: Comment = "",
) -> None:
    """Approve a PROPOSED edit (someone other than its author, or an admin)."""
    edit = _transition(url, api_key, workspace_id, edit_id, "approve", {"comment": comment})
    console.print(edit_line(edit))


@app.command()
def reject(
    workspace_id: WorkspaceId,
    edit_id: EditId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    comment: Comment = "",
) -> None:
    """Reject a PROPOSED or APPROVED edit (its author may, to withdraw it)."""
    edit = _transition(url, api_key, workspace_id, edit_id, "reject", {"comment": comment})
    console.print(edit_line(edit))


@app.command("apply")
def apply_edit(
    workspace_id: WorkspaceId,
    edit_id: EditId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    allow_rebase: Annotated[
        bool, typer.Option("--allow-rebase", help="Apply onto files changed since, if it fits.")
    ] = False,
    fuzz: Annotated[int, typer.Option(min=0, max=3, help="Fuzz for a rebase.")] = 0,
) -> None:
    """Write an APPROVED edit, every file or none."""
    body = {"allow_rebase": allow_rebase, "fuzz": fuzz}
    edit = _transition(url, api_key, workspace_id, edit_id, "apply", body)
    console.print(edit_line(edit) + (" (rebased)" if edit["rebased"] else ""))


@app.command()
def revert(
    workspace_id: WorkspaceId,
    edit_id: EditId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    title: Title = "",
) -> None:
    """Write an APPLIED edit's files back as they were; prints the revert (a new edit)."""
    undo = _transition(url, api_key, workspace_id, edit_id, "revert", {"title": title})
    console.print(f"reverted {edit_id}")
    console.print(edit_line(undo))


@app.command()
def session(
    workspace_id: WorkspaceId,
    title: Annotated[str, typer.Argument(help="What the session is for.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Open an edit session; pass its id with --session to group edits (and diff them)."""
    with workspace_api(url, api_key) as client:
        opened = client.request("POST", f"{API}/{workspace_id}/sessions", json={"title": title})
    console.print(f"session id: {opened['id']}")


@app.command()
def diff(
    workspace_id: WorkspaceId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    edit: Annotated[str | None, typer.Option("--edit", help="One edit's diff.")] = None,
    session: Annotated[
        str | None, typer.Option("--session", help="A session's applied edits, as one diff.")
    ] = None,
) -> None:
    """Print a unified diff exactly as the server sends it (`git apply` takes it)."""
    if (edit is None) == (session is None):
        raise typer.BadParameter("give --edit EDIT_ID or --session SESSION_ID")
    kind, item = ("edits", edit) if edit is not None else ("sessions", session)
    with workspace_api(url, api_key):
        data = fetch_raw(url, api_key, f"{API}/{workspace_id}/{kind}/{item}/diff")
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()

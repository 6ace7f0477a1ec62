"""`ymera workspaces edit ID create|str-replace|insert|undo PATH` and `ymera workspaces
patch`: changing a workspace's files (at once, or proposed for review)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape

from ymera.cli.agents import DEFAULT_URL, ApiKey, Url
from ymera.cli.common import console, table
from ymera.cli.workspace_api import (
    API,
    WorkspaceId,
    analysis_lines,
    edit_line,
    one_text,
    read_input,
    workspace_api,
)
from ymera.code.schemas import EditType


class Operation(StrEnum):
    CREATE = "create"
    STR_REPLACE = "str-replace"
    INSERT = "insert"
    UNDO = "undo"


# The options each operation takes (the rest are refused, so none is silently ignored).
OPTIONS: dict[Operation, frozenset[str]] = {
    Operation.CREATE: frozenset({"--text", "--text-file"}),
    Operation.STR_REPLACE: frozenset(
        {"--old", "--old-file", "--new", "--new-file", "--expected-hash"}
    ),
    Operation.INSERT: frozenset({"--line", "--text", "--text-file", "--expected-hash"}),
    Operation.UNDO: frozenset(),
}

Propose = Annotated[
    bool, typer.Option("--propose", help="Record it for review (PROPOSED); write nothing.")
]
Kind = Annotated[EditType, typer.Option("--type", help="Kind of change.")]
Priority = Annotated[int, typer.Option(min=0, max=9, help="9 is most urgent.")]
Title = Annotated[str, typer.Option(help="A short title for the edit.")]
Session = Annotated[
    str | None, typer.Option("--session", help="Join this open edit session (its id).")
]
ExpectedHash = Annotated[
    str | None,
    typer.Option(help="Refuse (409 conflict) unless the file's sha256 is this (from `view`)."),
]


def _meta(
    kind: EditType, priority: int, title: str, session: str | None, propose: bool
) -> dict[str, Any]:
    meta: dict[str, Any] = {"type": kind.value, "priority": priority, "title": title}
    if session:
        meta["session_id"] = session
    return {**meta, "propose": propose}


def _command(operation: Operation, path: str, given: dict[str, Any]) -> dict[str, Any]:
    """The editor command of ``operation`` from the options given (None: not given)."""
    extra = [name for name, value in given.items() if value is not None]
    extra = [name for name in extra if name not in OPTIONS[operation]]
    if extra:
        raise typer.BadParameter(f"{', '.join(extra)}: not an option of {operation}")
    command: dict[str, Any] = {"command": operation.replace("-", "_"), "path": path}
    if operation is Operation.CREATE:
        command["file_text"] = one_text(given["--text"], given["--text-file"], "text")
    elif operation is Operation.STR_REPLACE:
        if given["--old-file"] == "-" and given["--new-file"] == "-":
            raise typer.BadParameter("only one of --old-file and --new-file can be stdin")
        command["old_str"] = one_text(given["--old"], given["--old-file"], "old")
        command["new_str"] = one_text(given["--new"], given["--new-file"], "new")
    elif operation is Operation.INSERT:
        if given["--line"] is None:
            raise typer.BadParameter("insert needs --line N (0: at the top)")
        command["insert_line"] = given["--line"]
        command["insert_text"] = one_text(given["--text"], given["--text-file"], "text")
    if given["--expected-hash"] is not None:
        command["expected_hash"] = given["--expected-hash"]
    return command


def edit(
    workspace_id: WorkspaceId,
    operation: Annotated[Operation, typer.Argument(help="What to do to the file.")],
    path: Annotated[str, typer.Argument(help="The file.")],
    text: Annotated[str | None, typer.Option(help="create, insert: the text.")] = None,
    text_file: Annotated[
        str | None,
        typer.Option("--text-file", help="create, insert: read it from FILE (-: stdin)."),
    ] = None,
    old: Annotated[
        str | None, typer.Option(help="str-replace: the exact text to replace (once).")
    ] = None,
    old_file: Annotated[
        str | None, typer.Option("--old-file", help="str-replace: read it from FILE (-: stdin).")
    ] = None,
    new: Annotated[str | None, typer.Option(help="str-replace: the replacement.")] = None,
    new_file: Annotated[
        str | None, typer.Option("--new-file", help="str-replace: read it from FILE (-: stdin).")
    ] = None,
    line: Annotated[
        int | None, typer.Option(min=0, help="insert: after this line (0: at the top).")
    ] = None,
    expected_hash: ExpectedHash = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    propose: Propose = False,
    kind: Kind = EditType.FEATURE,
    priority: Priority = 5,
    title: Title = "",
    session: Session = None,
) -> None:
    """Change one file with the text editor: create it, str-replace (the one occurrence of
    --old), insert lines after --line, or undo the last operation on it."""
    given = {
        "--text": text,
        "--text-file": text_file,
        "--old": old,
        "--old-file": old_file,
        "--new": new,
        "--new-file": new_file,
        "--line": line,
        "--expected-hash": expected_hash,
    }
    command = _command(operation, path, given)
    if operation is Operation.UNDO:
        if propose:
            raise typer.BadParameter("undo cannot be proposed")
        command.update({"session_id": session} if session else {})
    else:
        command.update(_meta(kind, priority, title, session, propose))
    with workspace_api(url, api_key) as client:
        done = client.request("POST", f"{API}/{workspace_id}/editor", json=command)
    console.print(escape(done["output"]))
    if done["edit"] is not None:
        console.print(edit_line(done["edit"]))
        for finding in analysis_lines(done["edit"]):
            console.print(finding)
    if done["sha256"] and (done["edit"] or {}).get("status") != "PROPOSED":
        console.print(f"sha256: {done['sha256']}")


def patch(
    workspace_id: WorkspaceId,
    file: Annotated[str, typer.Argument(help="A unified diff (- = stdin).")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and report only.")] = False,
    fuzz: Annotated[
        int, typer.Option(min=0, max=3, help="Let hunks move and lose N edge context lines.")
    ] = 0,
    propose: Propose = False,
    kind: Kind = EditType.FEATURE,
    priority: Priority = 5,
    title: Title = "",
    session: Session = None,
) -> None:
    """Apply a unified diff, every file or none (strict unless --fuzz)."""
    body = {
        "patch": read_input(file, "the patch"),
        "dry_run": dry_run,
        "fuzz": fuzz,
        **_meta(kind, priority, title, session, propose),
    }
    with workspace_api(url, api_key) as client:
        report = client.request("POST", f"{API}/{workspace_id}/patches", json=body)
    rows = table("path", "status", "added", "removed")
    for f in report["files"]:
        shown = f["path"] if not f["old_path"] else f"{f['old_path']} -> {f['path']}"
        rows.add_row(escape(shown), f["status"], f"+{f['added']}", f"-{f['removed']}")
    console.print(rows)
    if report["edit"] is not None:  # applied, or proposed (then nothing was written)
        console.print(edit_line(report["edit"]))
        for line in analysis_lines(report["edit"]):
            console.print(line)
    elif report["dry_run"]:
        console.print("dry run: the patch applies; nothing was written")

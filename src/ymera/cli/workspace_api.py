"""What the `ymera workspaces` commands share: raw requests to ``/api/v1/workspaces``,
problem+json messages, and reading texts and patches from files or stdin."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from ymera.cli.agents import api
from ymera.cli.common import fail
from ymera.client import Client, YmeraAPIError
from ymera.client.errors import error_from_response

API = "/api/v1/workspaces"

WorkspaceId = Annotated[str, typer.Argument(help="Id of the workspace.", show_default=False)]
EditId = Annotated[str, typer.Argument(help="Id of the edit.", show_default=False)]


@contextmanager
def workspace_api(url: str, api_key: str | None) -> Iterator[Client]:
    """:func:`ymera.cli.agents.api`, with the problem's ``code`` (and a failed hunk's
    lines) in the message."""
    with api(url, api_key) as client:
        try:
            yield client
        except YmeraAPIError as exc:
            if exc.status == 401:
                raise  # api() explains how to authenticate
            fail(problem_message(exc))


def problem_message(exc: YmeraAPIError) -> str:
    message = f"{exc.detail} [{exc.code}]"
    info = exc.body.get("details")
    if exc.code == "patch_failed" and isinstance(info, dict) and "expected" in info:
        expected = "".join(f"\n  - {line!r}" for line in info["expected"])
        found = "".join(f"\n  + {line!r}" for line in info.get("found", []))
        message += f"\nexpected:{expected}\nfound:{found or ' (end of file)'}"
    return message


def fetch_raw(url: str, api_key: str | None, path: str) -> bytes:
    """A non-JSON answer (a diff) as bytes; errors raise like ``Client.request``."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=30.0) as http:
        response = http.get(path, headers=headers)
    if not response.is_success:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise error_from_response(response.status_code, body, response.text)
    return response.content


def read_input(source: str, what: str) -> str:
    """The UTF-8 text of file ``source`` (``-``: stdin), line endings untouched."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {source}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"{what} ({source}) is not UTF-8 text") from exc


def one_text(value: str | None, file: str | None, option: str) -> str:
    """Exactly one of ``--OPTION TEXT`` and ``--OPTION-file FILE``."""
    if (value is None) == (file is None):
        raise typer.BadParameter(f"give --{option} TEXT or --{option}-file FILE (- for stdin)")
    return value if value is not None else read_input(file or "-", option)


def edit_line(edit: dict[str, Any]) -> str:
    paths = ", ".join(f["path"] for f in edit["files"]) or "-"
    return f"edit #{edit['number']} {edit['status']} ({escape(paths)})\nedit id: {edit['id']}"


def analysis_lines(edit: dict[str, Any]) -> list[str]:
    analysis = edit.get("analysis") or {}
    return [
        f"introduced: {escape(f['path'])}:{f['line']}:{f['column']} {f['code']} "
        f"{escape(f['message'])}"
        for f in analysis.get("introduced", [])
    ]

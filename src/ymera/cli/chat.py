"""`ymera chat`: list and create sessions, post, read the history and follow a
session live over its WebSocket, through the API (``ymera.client``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from ymera.cli.agents import DEFAULT_URL, ApiKey, Url, api, when
from ymera.cli.common import console, fail, table

app = typer.Typer(
    help="Chat sessions with people and agents through the API (--url / YMERA_URL, "
    "--api-key / YMERA_API_KEY).",
    no_args_is_help=True,
)


@app.command("list")
def list_sessions(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    status: Annotated[str | None, typer.Option(help="active or archived.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
) -> None:
    """List the sessions you take part in, newest first."""
    with api(url, api_key) as client:
        page = client.list_chat_sessions(status=status, limit=limit)
    rows = table("id", "title", "status", "messages", "participants", "updated")
    for s in page["items"]:
        rows.add_row(
            s["id"],
            escape(s["title"]),
            s["status"],
            str(s["last_seq"]),
            escape(", ".join(p["name"] for p in s["participants"])),
            when(s["updated_at"]),
        )
    console.print(rows)


@app.command()
def create(
    title: Annotated[str, typer.Argument(help="The session's title.")],
    participant: Annotated[
        list[str] | None,
        typer.Option(
            "--participant", "-p", help="A username (or user id), or agent:NAME. Repeatable."
        ),
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Create a session (you are one of its participants)."""
    with api(url, api_key) as client:
        session = client.create_chat_session(title, participant or [])
    console.print(f"session {session['id']}: {escape(session['title'])}")


@app.command()
def post(
    session_id: Annotated[str, typer.Argument(help="The session.")],
    content: Annotated[str, typer.Argument(help="The message.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Ask this agent (name or id): a chat task.")
    ] = None,
    file_id: Annotated[
        list[str] | None, typer.Option("--file", help="Attach an uploaded file. Repeatable.")
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Post a message; with --to, an agent answers in the session."""
    with api(url, api_key) as client:
        message = client.post_chat_message(session_id, content, file_ids=file_id, to=to)
    extra = f" (task {message['task_id']})" if message["task_id"] else ""
    console.print(f"#{message['seq']} posted{extra}")


def _line(message: dict[str, Any]) -> str:
    kind = message["kind"]
    style = {"agent_reply": "cyan", "agent_error": "red"}.get(kind, "bold")
    files = f" [dim]files: {', '.join(message['file_ids'])}[/]" if message["file_ids"] else ""
    return (
        f"[dim]#{message['seq']} {when(message['created_at'])}[/] "
        f"[{style}]{escape(message['sender_id'])}[/]: {escape(message['content'])}{files}"
    )


@app.command()
def history(
    session_id: Annotated[str, typer.Argument(help="The session.")],
    after: Annotated[
        int | None, typer.Option("--after", help="Messages after this seq (else the latest).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Print a page of a session's messages, in order."""
    with api(url, api_key) as client:
        page = client.chat_history(session_id, after_seq=after, limit=limit)
    for message in page["items"]:
        console.print(_line(message), highlight=False)
    if page["next_cursor"]:
        console.print("[dim](more: --after / an earlier page)[/]")


@app.command()
def tail(
    session_id: Annotated[str, typer.Argument(help="The session.")],
    last_seq: Annotated[
        int | None,
        typer.Option("--last-seq", help="Resume: first print what came after this seq."),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many messages.")
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Follow a session live (its WebSocket): messages, agents' streamed replies,
    typing and presence. Ctrl+C to stop."""
    if not api_key:
        fail("--api-key (or YMERA_API_KEY) is required to follow a session")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(url, api_key, session_id, last_seq, count))


async def _tail(
    url: str, token: str, session_id: str, last_seq: int | None, count: int | None
) -> None:
    import websockets

    ws_url = url.rstrip("/").replace("http", "ws", 1) + f"/api/v1/chat/sessions/{session_id}/ws"
    hello: dict[str, Any] = {"type": "hello", "token": token}
    if last_seq is not None:
        hello["last_seq"] = last_seq
    seen = 0
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps(hello))
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "message":
                console.print(_line(frame["message"]), highlight=False)
                seen += 1
                if count is not None and seen >= count:
                    return
            elif kind == "chunk":
                console.print(f"[dim]… {escape(str(frame.get('chunk')))}[/]", highlight=False)
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong", "t": frame.get("t")}))
            elif kind == "welcome":
                console.print(f"[dim]connected; latest #{frame['last_seq']}[/]")
            elif kind == "reload":
                console.print(
                    f"[yellow]more than {frame['max_resume_gap']} missed: see "
                    f"`ymera chat history {session_id}`[/]"
                )
            elif kind in ("presence", "typing"):
                what = frame.get("status", "typing")
                console.print(f"[dim]{escape(str(frame.get('participant_id')))} {what}[/]")

"""`ymera knowledge`: the knowledge base through the HTTP API (``ymera.client``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from ymera.cli.agents import DEFAULT_URL, ApiKey, Url, api, details, when
from ymera.cli.common import console, fail, table

app = typer.Typer(
    help="Experiences: add, search, find similar past tasks "
    "(--url / YMERA_URL, --api-key / YMERA_API_KEY).",
    no_args_is_help=True,
)

Outcome = Annotated[
    str | None,
    typer.Option(help="SUCCEEDED, FAILED, DEAD or CANCELLED."),
]
TaskType = Annotated[str | None, typer.Option("--type", "-t", help="Only this task type.")]


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _hits(items: list[dict[str, Any]]) -> None:
    rows = table("id", "score", "type", "outcome", "summary", "notes", "created")
    for e in items:
        rows.add_row(
            e["id"],
            "-" if e.get("score") is None else f"{e['score']:.3f}",
            escape(e["task_type"]),
            e["outcome"] or "-",
            escape(_short(e["summary"])),
            escape(_short(e["notes"], 60)) or "-",
            when(e["created_at"]),
        )
    console.print(rows)


@app.command()
def add(
    task_type: Annotated[str, typer.Argument(help="The task type it is about.")],
    summary: Annotated[str, typer.Argument(help="What was asked or done.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    notes: Annotated[str, typer.Option("--notes", "-n", help="What was learned.")] = "",
    outcome: Outcome = None,
    task: Annotated[str | None, typer.Option("--task", help="The task it came from.")] = None,
) -> None:
    """Add an experience and print its id."""
    with api(url, api_key) as client:
        e = client.add_experience(
            task_type,
            summary,
            notes=notes,
            outcome=outcome.upper() if outcome else None,
            task_id=task,
        )
    console.print(f"experience id: {e['id']}")


@app.command()
def search(
    query: Annotated[
        str | None,
        typer.Argument(help='Words (all must match), "a phrase", -excluded, or. None: newest.'),
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    task_type: TaskType = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's (id).")] = None,
    outcome: Outcome = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="From a previous page.")] = None,
) -> None:
    """Search experiences, most relevant first (newest first without a query)."""
    with api(url, api_key) as client:
        page = client.search_knowledge(
            query,
            task_type=task_type,
            agent_id=agent,
            outcome=outcome.upper() if outcome else None,
            limit=limit,
            cursor=cursor,
        )
    _hits(page["items"])
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")


@app.command()
def similar(
    text: Annotated[str | None, typer.Argument(help="Describe the work (or use --task).")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    task: Annotated[
        str | None, typer.Option("--task", help="A task to find look-alikes of.")
    ] = None,
    task_type: TaskType = None,
    outcome: Outcome = None,
    limit: Annotated[int, typer.Option(min=1, max=50)] = 5,
) -> None:
    """Past experiences like a task or a text, most similar first."""
    if (text is None) == (task is None):
        fail("give a text or --task (one of them)", code=2)
    with api(url, api_key) as client:
        items = client.similar_experiences(
            task_id=task,
            text=text,
            task_type=task_type,
            outcome=outcome.upper() if outcome else None,
            limit=limit,
        )
    _hits(items)


@app.command()
def get(
    experience_id: Annotated[str, typer.Argument(help="Experience id.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Show one experience."""
    with api(url, api_key) as client:
        e = client.get_experience(experience_id)
    details(
        [
            ("id", e["id"]),
            ("type", e["task_type"]),
            ("outcome", e["outcome"]),
            ("agent", e["agent_id"]),
            ("task", e["task_id"]),
            ("source", e["source"]),
            ("by", e["created_by"]),
            ("created", when(e["created_at"])),
            ("summary", e["summary"]),
            ("notes", e["notes"] or None),
        ]
    )


@app.command()
def delete(
    experience_id: Annotated[str, typer.Argument(help="Experience id.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Delete an experience (its author, an operator or an admin)."""
    with api(url, api_key) as client:
        client.delete_experience(experience_id)
    console.print(f"deleted experience {experience_id}")


@app.command()
def status(url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """How the knowledge base ranks (text or hybrid) and why."""
    with api(url, api_key) as client:
        s = client.knowledge_status()
    sem = s["semantic"]
    details(
        [
            ("text search", s["text_search"]),
            ("ranking", s["ranking"]),
            (
                "semantic",
                f"{sem['model']} (weight {sem['weight']:g})"
                if s["ranking"] == "hybrid"
                else sem["reason"],
            ),
            ("records tasks", "yes" if s["record_tasks"] else "no"),
            ("entries", f"{s['entries']} ({s['embedded']} embedded)"),
        ]
    )

"""The `ymera` command."""

from __future__ import annotations

import typer

from ymera import __version__
from ymera.cli import (
    agents,
    chat,
    config,
    db,
    keys,
    knowledge,
    routing,
    serve,
    tasks,
    users,
    worker,
    workflows,
    workspaces,
)

app = typer.Typer(
    help="YMERA: control plane for fleets of AI agents.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(serve.serve)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(keys.app, name="keys")
app.add_typer(config.app, name="config")
app.add_typer(worker.app, name="worker")
app.add_typer(agents.app, name="agents")
app.add_typer(tasks.app, name="tasks")
app.add_typer(workspaces.app, name="workspaces")
app.add_typer(workflows.app, name="workflows")
app.add_typer(chat.app, name="chat")
app.add_typer(routing.app, name="routing")
app.add_typer(routing.learning_app, name="learning")
app.add_typer(knowledge.app, name="knowledge")


@app.command()
def version() -> None:
    """Print the YMERA version."""
    typer.echo(__version__)

"""`ymera serve`: run the API server."""

from __future__ import annotations

import os

import typer
import uvicorn
from fastapi import FastAPI
from rich.panel import Panel

from ymera.app import create_app
from ymera.cli.common import console
from ymera.config import get_settings
from ymera.logging import configure_logging


def _print_admin(username: str, password: str) -> None:
    console.print(
        Panel.fit(
            f"username: [bold]{username}[/]\npassword: [bold]{password}[/]\n\n"
            "Shown once. Log in: POST /api/v1/auth/token, or create another admin "
            "with `ymera users create NAME --admin`.",
            title="YMERA admin created",
            border_style="green",
        )
    )


def app_factory() -> FastAPI:
    """Factory used by `ymera serve` (also with --reload)."""
    settings = get_settings()
    configure_logging(settings.log.level, json_format=settings.log.json_format)
    return create_app(settings, migrate_on_start=True, on_admin_created=_print_admin)


def serve(
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000; 0 picks a free one)."),
    reload: bool = typer.Option(False, help="Restart on code changes (development)."),
) -> None:
    """Run the server: applies migrations, creates the first admin if needed, serves the API."""
    if host is not None:
        os.environ["YMERA_SERVER__HOST"] = host
    if port is not None:
        os.environ["YMERA_SERVER__PORT"] = str(port)
    settings = get_settings()
    shown_host = settings.server.host
    url = f"http://{shown_host}:{settings.server.port}"
    console.print(
        Panel.fit(
            f"API        {url}/api/v1\nDocs       {url}/docs\nHealth     {url}/readyz\n"
            f"Database   {settings.resolved_database_url.split('@')[-1]}\n"
            f"Bus        {'redis' if settings.redis_url else 'in-process'}\n\n"
            "Log in: the admin password is printed below on first start.\n"
            "  curl -d username=admin -d password=... " + f"{url}/api/v1/auth/token",
            title="YMERA",
        )
    )
    uvicorn.run(
        "ymera.cli.serve:app_factory",
        factory=True,
        host=settings.server.host,
        port=settings.server.port,
        reload=reload,
        log_config=None,
        timeout_graceful_shutdown=int(settings.server.graceful_shutdown_seconds),
    )

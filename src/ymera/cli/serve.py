"""`ymera serve`: run the API server."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import signal
import socket
import sys
from types import FrameType
from typing import TYPE_CHECKING

import typer
import uvicorn
from rich.panel import Panel

from ymera.cli.common import console, load_settings
from ymera.config import get_settings
from ymera.logging import configure_logging

if TYPE_CHECKING:
    from fastapi import FastAPI

# The server's modules (ymera.app and everything it serves: about a second to
# import) are imported by `serve` itself, not by every `ymera` command.

STARTUP_FAILED = 3


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
    from ymera.app import create_app

    settings = get_settings()
    configure_logging(settings.log.level, json_format=settings.log.json_format)
    return create_app(settings, migrate_on_start=True, on_admin_created=_print_admin)


class _Server(uvicorn.Server):
    """uvicorn's server that marks the start of shutdown (the app's draining event):
    open streams (SSE) end at once instead of holding it until the graceful-shutdown
    timeout, `/readyz` and task submissions answer 503, and no new work is claimed."""

    def __init__(
        self, config: uvicorn.Config, draining: asyncio.Event, *, gc_freeze: bool = False
    ) -> None:
        super().__init__(config)
        self._draining = draining
        self._gc_freeze = gc_freeze

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._gc_freeze and self.started:
            freeze_startup_objects()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._draining.set()
        await super().shutdown(sockets)


# Collection thresholds once the start-up objects are frozen: the youngest
# generation is collected after 50,000 net allocations instead of 700, and the
# oldest ten times less often. Measured under the dispatch benchmark (10,000
# tasks in batches): garbage collection took 1.17 s of the server's CPU with the
# defaults (0.99 s in 8 full collections), 0.12 s with these.
GC_THRESHOLDS = (50_000, 50, 100)

# How long a thread may hold the GIL while another waits for it (Python's
# default: 5 ms). On SQLite the big statements of a group commit run on a thread
# of the connection's own (``ymera.db.sqlite_inline``), and that thread has to
# take the GIL from the event loop before SQLite starts: measured at 0.7 ms per
# statement with the default, 7% of the writer's time, on the critical path of
# every batch. Measured under the dispatch benchmark (SQLite, batches of 500,
# 4 runs each, alternated): 3,845 -> 4,134 tasks/s and 0.236 -> 0.222 ms of
# server CPU per task; single submits and PostgreSQL unchanged.
GIL_SWITCH_INTERVAL = 0.0005


def freeze_startup_objects() -> None:
    """Collect once, then freeze what is left (modules, routes, settings, ...) so
    later collections never scan it, and raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _exit_zero_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _run(server: uvicorn.Server) -> None:
    try:
        server.run()
    finally:
        # Exiting: spare the interpreter's final garbage collection of every object
        # (about a second with this many modules loaded, which would eat into the
        # grace period); the OS takes the memory back anyway.
        gc.freeze()


def serve(
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000; 0 picks a free one)."),
    reload: bool = typer.Option(False, help="Restart on code changes (development)."),
) -> None:
    """Run the server: applies migrations, creates the first admin if needed, serves the API.

    SIGTERM or Ctrl-C stops it gracefully, within
    YMERA_SERVER__GRACEFUL_SHUTDOWN_SECONDS: it takes no new work (`/readyz` and
    task submissions answer 503), open event streams end, requests and pushes to
    http agents in flight may finish, the tasks of pushes still unfinished are
    handed back to the queue, background loops stop. The exit status is 0 after
    SIGTERM (130 after Ctrl-C).
    """
    from ymera.app import shutdown_reserve
    from ymera.middleware import drain_signal

    if host is not None:
        os.environ["YMERA_SERVER__HOST"] = host
    if port is not None:
        os.environ["YMERA_SERVER__PORT"] = str(port)
    settings = load_settings()
    url = (
        settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}"
    ).rstrip("/")
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
    # Requests in flight get the grace period but its reserve, which the app's own
    # shutdown (leases handed back, loops stopped, connections closed) needs.
    seconds = settings.server.graceful_shutdown_seconds
    grace = max(0, math.floor(seconds - shutdown_reserve(seconds)))
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal to the handler
    # that was installed before it; with the default one the process would die by the
    # signal (status 143) after a clean stop. Exit 0 instead, as process managers expect.
    signal.signal(signal.SIGTERM, _exit_zero_on_sigterm)
    if reload:
        uvicorn.run(
            "ymera.cli.serve:app_factory",
            factory=True,
            reload=True,
            host=settings.server.host,
            port=settings.server.port,
            log_config=None,
            timeout_graceful_shutdown=grace,
            ws_per_message_deflate=settings.server.ws_compression,
        )
        return
    app = app_factory()
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        timeout_graceful_shutdown=grace,
        ws_per_message_deflate=settings.server.ws_compression,
    )
    server = _Server(config, drain_signal(app), gc_freeze=settings.server.gc_freeze)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    _run(server)
    if not server.started:
        raise typer.Exit(STARTUP_FAILED)

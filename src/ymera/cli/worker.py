"""`ymera worker run module:attr`: run a worker defined in your code."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from ymera.worker import Worker, WorkerStopped

app = typer.Typer(help="Run workers (agents that connect to YMERA).", no_args_is_help=True)


def load_worker(target: str) -> Worker:
    """Import ``module:attr`` (the current directory is importable) and return the Worker."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise typer.BadParameter("expected module:attribute, e.g. mymodule:worker")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    obj = getattr(module, attr, None)
    if callable(obj) and not isinstance(obj, Worker):
        obj = obj()  # a factory
    if not isinstance(obj, Worker):
        raise typer.BadParameter(f"{target} is not a ymera.worker.Worker")
    return obj


@app.command()
def run(
    target: str = typer.Argument(..., help="module:attribute of a Worker (or a factory of one)."),
    log_level: str = typer.Option("INFO", help="Log level of the worker."),
) -> None:
    """Run a worker until SIGTERM/SIGINT; SIGTERM drains (running tasks get the grace
    period, the rest are handed back)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    worker = load_worker(target)
    try:
        worker.run()
    except WorkerStopped as exc:
        typer.echo(f"worker stopped: {exc}", err=True)
        raise typer.Exit(1) from exc

"""A worker for the system tests, run as ``ymera worker run tests.system.sample_worker:worker``.

Configured by the environment (besides ``YMERA_URL`` / ``YMERA_API_KEY``):
``SAMPLE_WORKER_NAME`` (reported in every output and marker), ``SAMPLE_CONCURRENCY``,
``SAMPLE_GRACE_SECONDS`` (drain grace on SIGTERM).

Task types:

* ``echo``: returns its input at once.
* ``hold``: blocks until the file ``input["gate"]`` exists (or the task is cancelled),
  but only on workers named in ``input["hold_on"]`` (all workers when it is absent);
  other workers finish it at once. A test that never creates the gate gets a task that
  runs until its worker dies or drains.
* ``sleep``: sleeps ``input["seconds"]``.
* ``interval``: like ``sleep``, and its marker holds the start and end times.
* ``chat``: streams the message's words back as chunks, then answers
  ``"<worker name> heard: <content>"``.

Every handler first writes a marker ``<task_id>.<attempt>.<worker name>`` into
``input["markers"]`` (when given), so a test can count executions exactly.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from ymera.worker import TaskContext, Worker

NAME = os.environ.get("SAMPLE_WORKER_NAME", "sample")

worker = Worker(
    concurrency=int(os.environ.get("SAMPLE_CONCURRENCY", "1")),
    grace_seconds=float(os.environ.get("SAMPLE_GRACE_SECONDS", "5")),
    reconnect_base=0.05,
    reconnect_cap=0.5,
)


def _mark(ctx: TaskContext) -> None:
    markers = ctx.input.get("markers")
    if markers:
        (Path(markers) / f"{ctx.task_id}.{ctx.attempt}.{NAME}").touch()


def _output(ctx: TaskContext, **extra: Any) -> dict[str, Any]:
    return {"worker": NAME, "attempt": ctx.attempt, "pid": os.getpid(), **extra}


@worker.handler("echo")
async def echo(ctx: TaskContext) -> dict[str, Any]:
    _mark(ctx)
    return _output(ctx, echo=ctx.input.get("value"))


@worker.handler("hold")
async def hold(ctx: TaskContext) -> dict[str, Any]:
    _mark(ctx)
    hold_on = ctx.input.get("hold_on")
    if hold_on is None or NAME in hold_on:
        gate = Path(str(ctx.input.get("gate", "/nonexistent/gate")))
        while not gate.exists():
            if ctx.is_cancelled():
                return _output(ctx, cancelled=True)
            await asyncio.sleep(0.02)
    return _output(ctx, held=True)


@worker.handler("sleep")
async def sleep(ctx: TaskContext) -> dict[str, Any]:
    _mark(ctx)
    await asyncio.sleep(float(ctx.input.get("seconds", 0.1)))
    return _output(ctx, slept=ctx.input.get("seconds"))


@worker.handler("interval")
async def interval(ctx: TaskContext) -> dict[str, Any]:
    """Like ``sleep`` (``input["seconds"]``, default 0.01), but the marker's content is
    ``"<start> <end>"`` in wall-clock seconds: ``"<start>"`` while the handler runs, so an
    execution cut short by a SIGKILL leaves only its start. Lets a test check that no
    two executions of one task ever overlapped in time."""
    import time

    markers = ctx.input.get("markers")
    path = Path(markers) / f"{ctx.task_id}.{ctx.attempt}.{NAME}" if markers else None
    start = time.time()
    if path is not None:
        _replace(path, f"{start!r}")
    await asyncio.sleep(float(ctx.input.get("seconds", 0.01)))
    end = time.time()
    if path is not None:
        _replace(path, f"{start!r} {end!r}")
    return _output(ctx, started=start, ended=end)


@worker.handler("chat")
async def chat(ctx: TaskContext) -> dict[str, Any]:
    for word in str(ctx.input.get("content", "")).split():
        ctx.stream(word + " ")
    return {"content": f"{NAME} heard: {ctx.input.get('content')}"}


def _replace(path: Path, text: str) -> None:
    """Write atomically: a SIGKILL never leaves the marker empty or half-written."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)

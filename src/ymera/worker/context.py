"""What a handler gets: the task, and ways to report while it runs."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ymera.worker.knowledge import TaskKnowledge
from ymera.worker.workspace import TaskWorkspace


class CancelFlag:
    """Set once the task is cancelled: set on the worker's event loop, read by
    the handler, async or in a thread (a plain attribute: writing and reading
    it is atomic, and nothing waits on it, so no lock and condition per task
    as a ``threading.Event`` would make)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


@dataclass
class TaskContext:
    """The running task. Methods are plain calls (no ``await``), safe from async
    handlers and from sync handlers running in a thread; ``download`` and the
    methods of ``workspace`` are coroutines.

    ``workspace``: for a code task (one submitted with a ``workspace_id``), the
    workspace its handler edits (:class:`~ymera.worker.TaskWorkspace`); None
    otherwise.

    ``knowledge``: the knowledge base (:class:`~ymera.worker.TaskKnowledge`):
    ``await ctx.knowledge.similar()`` before working, ``await ctx.knowledge.add(...)``
    after.
    """

    task_id: str
    attempt: int
    lease_token: str
    task_type: str
    input: dict[str, Any]
    file_ids: list[str]
    deadline: str | None
    timeout: float | None
    logger: logging.LoggerAdapter[logging.Logger]
    _emit: Any = field(repr=False)
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _cancelled: CancelFlag = field(default_factory=CancelFlag, repr=False)
    _http: tuple[str, str] = field(default=("", ""), repr=False)
    _chunks: int = field(default=0, repr=False)
    workspace_id: str | None = None
    workspace_mode: str | None = None
    workspace: TaskWorkspace | None = field(default=None, init=False)
    _knowledge: TaskKnowledge | None = field(default=None, init=False, repr=False)

    @property
    def knowledge(self) -> TaskKnowledge:
        """The knowledge base's client for this task (made on first use: most
        handlers never ask)."""
        if self._knowledge is None:
            base, key = self._http
            self._knowledge = TaskKnowledge(
                url=base, api_key=key, task_id=self.task_id, task_type=self.task_type
            )
        return self._knowledge

    def __post_init__(self) -> None:
        if self.workspace_id:
            base, key = self._http
            self.workspace = TaskWorkspace(
                url=base,
                api_key=key,
                task_id=self.task_id,
                workspace_id=self.workspace_id,
                mode=self.workspace_mode or "propose",
            )

    @property
    def ids(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "attempt": self.attempt, "lease_token": self.lease_token}

    def _send(self, frame: dict[str, Any]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._emit(frame)
        else:
            self._loop.call_soon_threadsafe(self._emit, frame)

    def heartbeat(self) -> None:
        """Tell the server the task is alive (renews its lease)."""
        self._send({"type": "progress", **self.ids, "pct": None, "message": None})

    def progress(self, pct: float, message: str | None = None) -> None:
        """Report progress (0-100) with an optional message; also renews the lease."""
        self._send({"type": "progress", **self.ids, "pct": float(pct), "message": message})

    def stream(self, chunk: str) -> None:
        """Stream a piece of output to whoever watches the task."""
        self._chunks += 1
        self._send({"type": "output", **self.ids, "chunk": str(chunk), "seq": self._chunks})

    def is_cancelled(self) -> bool:
        """True once the server cancelled this task (or the worker is shutting down hard)."""
        return self._cancelled.is_set()

    async def download(self, file_id: str, dest: str | Path) -> Path:
        """Download an attached file to ``dest`` (streamed)."""
        base, key = self._http
        target = Path(dest)
        async with (
            httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http,
            http.stream("GET", f"/api/v1/files/{file_id}/content") as resp,
        ):
            resp.raise_for_status()
            out = await asyncio.to_thread(target.open, "wb")
            try:
                async for part in resp.aiter_bytes():
                    await asyncio.to_thread(out.write, part)
            finally:
                await asyncio.to_thread(out.close)
        return target

"""Live worker connections on this replica.

Each connection has a bounded send queue drained by one sender task; a worker
that does not read its frames fills the queue and is cut with close code 4408
instead of growing server memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from ymera.kit import jsonx

log = structlog.get_logger("ymera.hub")

MAX_BATCH_FRAMES = 500
CLOSE_SLOW_CONSUMER = 4408
CLOSE_REPLACED = 4000
CLOSE_GOING_AWAY = 1001


class SendCounter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class FrameSink(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(eq=False)
class WorkerConnection:
    agent_id: str
    agent_name: str
    session_id: str
    concurrency: int
    sink: FrameSink
    queue_size: int = 1000
    held: set[str] = field(default_factory=set)  # task ids assigned and not finished
    # Slots taken by claims in flight (their transactions not yet committed): two
    # claims running at once (PostgreSQL) must not both fill the same free slot.
    claiming: int = 0
    task_types: frozenset[str] | None = None  # what the worker handles (None: anything)
    draining: bool = False
    closed: bool = False
    batch_frames: bool = False  # the worker reads `batch` frames (hello.features)
    messages_sent: SendCounter | None = None
    frames_sent: SendCounter | None = None

    def __post_init__(self) -> None:
        # Room for an assignment per slot on top of ``queue_size``: a claim may
        # fill every free slot at once (a worker of 1,024 slots was cut when one
        # claim of 1,024 tasks met a queue of 1,000), and assignments are bounded
        # by the slots; what a worker that stops reading can pile up beyond them
        # (answers to its own frames) is what the bound is for.
        # Frames (JSON text) waiting to be sent; None ends the send loop. A deque
        # and an event rather than an asyncio.Queue: two or three frames per task
        # go through here, and a Queue's bookkeeping cost a microsecond each way.
        self._frames: collections.deque[str | None] = collections.deque()
        self._limit = self.queue_size + self.concurrency
        self._ready = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    @property
    def free(self) -> int:
        if self.draining or self.closed:
            return 0
        return max(0, self.concurrency - len(self.held) - self.claiming)

    def start(self) -> None:
        self._sender = asyncio.create_task(self._send_loop(), name=f"ws-send-{self.agent_name}")

    def send(self, frame: dict[str, Any]) -> bool:
        """Queue a frame; False (and the connection is cut) when the queue is full."""
        if self.closed:
            return False
        if len(self._frames) >= self._limit:
            log.warning("worker_too_slow", agent=self.agent_name, queued=len(self._frames))
            asyncio.get_running_loop().create_task(
                self.close(CLOSE_SLOW_CONSUMER, "send queue full: read your frames")
            )
            return False
        self._frames.append(jsonx.dumps(frame))
        self._ready.set()
        return True

    async def _send_loop(self) -> None:
        try:
            frames = self._frames
            while True:
                if not frames:
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                item = frames.popleft()
                if item is None:
                    return
                if not self.batch_frames or not frames:
                    await self.sink.send_text(item)
                    self._count(1)
                    continue
                # Frames queued meanwhile go out in one message (one WebSocket
                # frame to write and to parse instead of hundreds under load).
                items = [item]
                stop = False
                while frames and len(items) < MAX_BATCH_FRAMES:
                    more = frames.popleft()
                    if more is None:
                        stop = True
                        break
                    items.append(more)
                await self.sink.send_text(_batch(items))
                self._count(len(items))
                if stop:
                    return
        except Exception as exc:  # the socket is gone; the receive side notices too
            log.info("worker_send_stopped", agent=self.agent_name, error=repr(exc))
            self.closed = True

    def _count(self, frames: int) -> None:
        if self.messages_sent is not None and self.frames_sent is not None:
            self.messages_sent.inc()
            self.frames_sent.inc(frames)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self._frames.append(None)
        self._ready.set()
        with contextlib.suppress(Exception):
            await self.sink.close(code=code, reason=reason)

    async def stop_sender(self) -> None:
        self.closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender


def _batch(items: list[str]) -> str:
    """A `batch` frame of already-encoded frames."""
    if len(items) == 1:
        return items[0]
    return '{"type":"batch","frames":[' + ",".join(items) + "]}"


class WorkerHub:
    def __init__(
        self,
        *,
        messages_sent: SendCounter | None = None,
        frames_sent: SendCounter | None = None,
    ) -> None:
        self._by_agent: dict[str, WorkerConnection] = {}
        self._messages_sent = messages_sent
        self._frames_sent = frames_sent

    async def register(self, conn: WorkerConnection) -> None:
        conn.messages_sent = self._messages_sent
        conn.frames_sent = self._frames_sent
        old = self._by_agent.get(conn.agent_id)
        self._by_agent[conn.agent_id] = conn
        if old is not None and old is not conn:
            await old.close(CLOSE_REPLACED, "replaced by a newer connection of this agent")

    def unregister(self, conn: WorkerConnection) -> bool:
        """Remove ``conn``; False when a newer connection already replaced it."""
        if self._by_agent.get(conn.agent_id) is conn:
            del self._by_agent[conn.agent_id]
            return True
        return False

    def get(self, agent_id: str) -> WorkerConnection | None:
        return self._by_agent.get(agent_id)

    def connections(self) -> list[WorkerConnection]:
        return list(self._by_agent.values())

    def with_capacity(self) -> list[WorkerConnection]:
        return [c for c in self._by_agent.values() if c.free > 0]

    async def drain_all(self, grace_seconds: float) -> None:
        for conn in self.connections():
            conn.draining = True
            conn.send(
                {"type": "drain", "reason": "server shutting down", "grace_seconds": grace_seconds}
            )

    async def close_all(self) -> None:
        for conn in self.connections():
            await conn.close(CLOSE_GOING_AWAY, "server shutting down")

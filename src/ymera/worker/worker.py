"""The worker: connects over WebSocket, runs handlers, reports results.

Reconnects with exponential backoff and jitter; tasks keep running while the
connection is down, their reports are queued, and the reconnect's ``hello``
lists them so the server lets the worker keep them (within the lease).
SIGTERM drains: no new work, running tasks get ``grace`` seconds, the rest are
handed back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import random
import signal
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ymera import __version__
from ymera.kit import jsonx
from ymera.worker.context import TaskContext

Handler = Callable[[TaskContext], Any]

PROTOCOL = 1
FATAL_CLOSE_CODES = {4401, 4403, 4404, 4409}
# A task's `accept` waits this long: if its result is ready by then, the result
# alone goes out (the server moves the task through RUNNING to SUCCEEDED), one
# report instead of two for the many tasks that finish at once.
ACCEPT_DELAY = 0.02

log = logging.getLogger("ymera.worker")


class TaskFailed(Exception):
    """Raise from a handler to fail the task; ``retryable=False`` stops retries."""

    def __init__(self, message: str, *, retryable: bool = True, type: str = "error") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.type = type


class WorkerStopped(Exception):
    """The server refused this worker for good (bad key, unknown agent, protocol)."""


def _ws_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/") + "/api/v1/agents/connect"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class Worker:
    """A YMERA worker for one agent.

    ``Worker(url, api_key, concurrency=4)`` (url and key default to the
    ``YMERA_URL`` and ``YMERA_API_KEY`` environment variables); register handlers with
    ``@worker.handler("task_type")`` (async or sync functions taking a
    :class:`TaskContext` and returning a JSON-able value); then ``worker.run()``.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        concurrency: int = 1,
        grace_seconds: float = 30.0,
        reconnect_base: float = 0.5,
        reconnect_cap: float = 30.0,
    ) -> None:
        url = url or os.environ.get("YMERA_URL")
        api_key = api_key or os.environ.get("YMERA_API_KEY")
        if not url or not api_key:
            raise ValueError("Worker needs url and api_key (or YMERA_URL and YMERA_API_KEY)")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.concurrency = concurrency
        self.grace_seconds = grace_seconds
        self.reconnect_base = reconnect_base
        self.reconnect_cap = reconnect_cap
        self.handlers: dict[str, Handler] = {}
        self.agent_id: str | None = None
        self.connected = asyncio.Event()
        self.completed = 0
        self._running: dict[str, tuple[asyncio.Task[None], TaskContext]] = {}
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None
        self._stop: asyncio.Event | None = None
        self._draining = False
        self._heartbeat_interval = 5.0
        self._ws: Any = None
        self._batch = False  # the server reads `batch` frames
        self._accepts: dict[str, dict[str, Any]] = {}  # accepts not sent yet, by task
        # When each of those is due, in order (ACCEPT_DELAY is the same for all):
        # one timer for them all, not one per task.
        self._accepts_due: collections.deque[tuple[float, str]] = collections.deque()
        self._accept_timer: asyncio.TimerHandle | None = None
        self._is_async: dict[Handler, bool] = {}

    # --- registration ------------------------------------------------------------

    def handler(self, task_type: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.handlers[task_type] = fn
            return fn

        return register

    # --- lifecycle ---------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGINT/SIGTERM (blocking), on uvloop where it is installed
        (it comes with the server's dependencies): the worker's per-task work is
        mostly the event loop's."""
        try:
            import uvloop
        except ImportError:  # pragma: no cover  (installed with ymera)
            factory = None
        else:
            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self.serve(install_signals=True))

    def stop(self) -> None:
        """Drain and stop (from the worker's event loop)."""
        if self._stop is not None:
            self._stop.set()

    async def serve(self, *, install_signals: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._outbox = asyncio.Queue()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, self._stop.set)
        conn_task = asyncio.create_task(self._connection_loop(), name="ymera-worker-conn")
        stop_wait = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait({conn_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if conn_task in done:
            stop_wait.cancel()
            conn_task.result()  # re-raise WorkerStopped
            return
        await self._drain()
        conn_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await conn_task

    async def _drain(self) -> None:
        self._draining = True
        if self.connected.is_set():
            # Ask for no more work first, so nothing new bounces back and forth.
            # (Disconnected, there is nobody to ask: whatever a reconnect offers
            # meanwhile is released at once, the worker being draining.)
            self._emit({"type": "drain"})
            await self._flush_outbox(timeout=1.0)
        running = [t for t, _ in self._running.values()]
        if running:
            log.info(
                "draining: waiting up to %.1fs for %d task(s)", self.grace_seconds, len(running)
            )
            _, pending = await asyncio.wait(running, timeout=self.grace_seconds)
            for task_id, (job, ctx) in list(self._running.items()):
                if job in pending:
                    ctx._cancelled.set()
                    job.cancel()
                    self._emit({"type": "release", **ctx.ids, "reason": "worker shutting down"})
                    self._running.pop(task_id, None)
        await self._flush_outbox(timeout=5.0)

    async def _flush_outbox(self, timeout: float) -> None:
        assert self._outbox is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._outbox.empty() and loop.time() < deadline:
            if self._ws is None:
                await asyncio.sleep(0.05)
                continue
            frame = self._outbox.get_nowait()
            try:
                await self._ws.send(jsonx.dumps(frame))
            except ConnectionClosed:
                self._outbox.put_nowait(frame)
                await asyncio.sleep(0.05)

    # --- connection ----------------------------------------------------------------

    async def _connection_loop(self) -> None:
        attempt = 0
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                async with websockets.connect(
                    _ws_url(self.url),
                    max_size=2**24,
                    ping_interval=20,
                    open_timeout=10,
                    compression=None,  # small frames: deflate costs more CPU than it saves
                ) as ws:
                    await self._session(ws)
                    attempt = 0
            except WorkerStopped:
                raise
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError) as exc:
                log.warning("connection lost: %r", exc)
            finally:
                self._ws = None
                self.connected.clear()
            if self._stop.is_set():
                return
            attempt += 1
            delay = min(self.reconnect_cap, self.reconnect_base * 2 ** min(attempt, 10))
            delay *= 0.5 + random.random() / 2
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _session(self, ws: Any) -> None:
        held = [ctx.ids for _, ctx in self._running.values()]
        await ws.send(
            jsonx.dumps(
                {
                    "type": "hello",
                    "protocol": PROTOCOL,
                    "api_key": self.api_key,
                    "concurrency": self.concurrency,
                    "task_types": sorted(self.handlers),
                    "sdk": f"ymera-python/{__version__}",
                    "held": held,
                    "features": ["batch"],
                }
            )
        )
        try:
            welcome = jsonx.loads(await asyncio.wait_for(ws.recv(), 10))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            if code in FATAL_CLOSE_CODES:
                raise WorkerStopped(
                    f"server refused the worker: {code} {exc.rcvd.reason if exc.rcvd else ''}"
                ) from exc
            raise
        if welcome.get("type") != "welcome":
            raise WorkerStopped(f"unexpected first frame: {welcome!r}")
        self.agent_id = welcome["agent_id"]
        self._heartbeat_interval = float(welcome.get("heartbeat_interval", 5.0))
        for task_id in welcome.get("revoked", []):
            entry = self._running.pop(task_id, None)
            if entry is not None:
                entry[1]._cancelled.set()
                entry[0].cancel()
        self._batch = "batch" in (welcome.get("features") or [])
        self._ws = ws
        self.connected.set()
        log.info("connected as agent %s", self.agent_id)
        sender = asyncio.create_task(self._send_loop(ws))
        beater = asyncio.create_task(self._heartbeat_loop())
        try:
            async for raw in ws:
                self._on_frame(jsonx.loads(raw))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            if code in FATAL_CLOSE_CODES:
                raise WorkerStopped(f"server closed the worker: {code}") from exc
            raise
        finally:
            sender.cancel()
            beater.cancel()

    async def _send_loop(self, ws: Any) -> None:
        assert self._outbox is not None
        while True:
            frames = [await self._outbox.get()]
            # Whatever else is queued goes out in the same message (a `batch`).
            while self._batch and not self._outbox.empty() and len(frames) < 500:
                frames.append(self._outbox.get_nowait())
            message = frames[0] if len(frames) == 1 else {"type": "batch", "frames": frames}
            try:
                await ws.send(jsonx.dumps(message))
            except ConnectionClosed:
                for frame in frames:  # they go out after the reconnect
                    self._outbox.put_nowait(frame)
                return

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            self._emit(
                {
                    "type": "heartbeat",
                    "load": len(self._running),
                    "tasks": [ctx.ids for _, ctx in self._running.values()],
                }
            )

    def _emit(self, frame: dict[str, Any]) -> None:
        assert self._outbox is not None
        task_id = frame.get("task_id")
        if task_id is not None and task_id in self._accepts:
            accept = self._accepts.pop(task_id)
            if frame.get("type") != "result":  # a result says it started, too
                self._outbox.put_nowait(accept)
        self._outbox.put_nowait(frame)

    def _defer_accept(
        self, loop: asyncio.AbstractEventLoop, task_id: str, frame: dict[str, Any]
    ) -> None:
        """Send ``frame`` (the task's accept) in ACCEPT_DELAY unless its result
        goes out first (see :meth:`_emit`)."""
        due = loop.time() + ACCEPT_DELAY
        self._accepts[task_id] = frame
        self._accepts_due.append((due, task_id))
        if self._accept_timer is None:
            self._accept_timer = loop.call_at(due, self._send_accepts)

    def _send_accepts(self) -> None:
        """Send the accepts now due (those of tasks still without a result)."""
        self._accept_timer = None
        if self._outbox is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = self._accepts_due
        while due and due[0][0] <= now:
            accept = self._accepts.pop(due.popleft()[1], None)
            if accept is not None:
                self._outbox.put_nowait(accept)
        while due and due[0][1] not in self._accepts:  # their results went out
            due.popleft()
        if due:
            self._accept_timer = loop.call_at(due[0][0], self._send_accepts)

    # --- frames --------------------------------------------------------------------

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "batch":
            for inner in frame.get("frames") or []:
                if isinstance(inner, dict) and inner.get("type") != "batch":
                    self._on_frame(inner)
        elif kind == "assign":
            self._start(frame)
        elif kind == "cancel":
            entry = self._running.get(str(frame.get("task_id")))
            if entry is not None:
                entry[1]._cancelled.set()
        elif kind == "drain":
            self._draining = True
        elif kind == "ping":
            self._emit({"type": "pong", "nonce": frame.get("nonce")})
        elif kind == "error":
            log.warning("server refused a frame: %s %s", frame.get("code"), frame.get("message"))

    def _start(self, frame: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        task_id = str(frame["task_id"])
        ctx = TaskContext(
            task_id=task_id,
            attempt=int(frame["attempt"]),
            lease_token=str(frame["lease_token"]),
            task_type=str(frame.get("task_type", "")),
            input=dict(frame.get("input") or {}),
            file_ids=list(frame.get("file_ids") or []),
            deadline=frame.get("deadline"),
            timeout=frame.get("timeout"),
            logger=logging.LoggerAdapter(log, {"task_id": task_id}),
            _emit=self._emit,
            _loop=loop,
            _http=(self.url, self.api_key),
            workspace_id=frame.get("workspace_id"),
            workspace_mode=frame.get("workspace_mode"),
        )
        handler = self.handlers.get(ctx.task_type)
        if handler is None or self._draining:
            reason = "worker is draining" if handler else f"no handler for {ctx.task_type!r}"
            self._emit({"type": "release", **ctx.ids, "reason": reason})
            return
        self._defer_accept(loop, task_id, {"type": "accept", **ctx.ids})
        job = asyncio.create_task(self._execute(handler, ctx), name=f"task-{task_id}")
        self._running[task_id] = (job, ctx)

    async def _execute(self, handler: Handler, ctx: TaskContext) -> None:
        try:
            is_async = self._is_async.get(handler)
            if is_async is None:
                is_async = self._is_async[handler] = inspect.iscoroutinefunction(handler)
            coro = handler(ctx) if is_async else asyncio.to_thread(handler, ctx)
            if ctx.timeout:
                value = await asyncio.wait_for(coro, ctx.timeout)
            else:
                value = await coro
            if ctx.is_cancelled():
                return
            output = value if isinstance(value, dict) else {"value": value}
            self._emit({"type": "result", **ctx.ids, "output": output})
            self.completed += 1
        except asyncio.CancelledError:
            raise
        except TaskFailed as exc:
            self._emit(
                {
                    "type": "fail",
                    **ctx.ids,
                    "error": {"message": str(exc), "type": exc.type, "retryable": exc.retryable},
                }
            )
        except TimeoutError:
            self._emit(
                {
                    "type": "fail",
                    **ctx.ids,
                    "error": {"message": "handler timed out", "type": "timeout", "retryable": True},
                }
            )
        except Exception as exc:
            ctx.logger.exception("handler failed")
            self._emit(
                {
                    "type": "fail",
                    **ctx.ids,
                    "error": {
                        "message": repr(exc)[:2000],
                        "type": type(exc).__name__,
                        "retryable": True,
                    },
                }
            )
        finally:
            self._running.pop(ctx.task_id, None)
            if ctx.workspace is not None:
                with contextlib.suppress(Exception):
                    await ctx.workspace.aclose()

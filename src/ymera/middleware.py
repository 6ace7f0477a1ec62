"""Pure-ASGI middleware: request id, structured access log, HTTP metrics, the 500
for unexpected errors, and the end of open streams on shutdown; plus the app's
*draining* signal that marks the start of shutdown.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from typing import Any

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ymera.errors import ShuttingDown
from ymera.monitoring.metrics import Metrics
from ymera.problems import problem

log = structlog.get_logger("ymera.http")
_access_log = logging.getLogger("ymera.http")  # its level decides whether requests are logged

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_END_OF_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": False}


def drain_signal(app: Any) -> asyncio.Event:
    """The app's "draining" event (created on first use).

    Once it is set, every streaming response that is open (an SSE stream, say) is
    ended cleanly at once, instead of holding the server's graceful shutdown until
    its timeout. ``ymera serve`` sets it when shutdown begins; clients such as
    EventSource reconnect to another replica and resume with Last-Event-ID.
    """
    event = getattr(app.state, "draining", None)
    if not isinstance(event, asyncio.Event):
        event = asyncio.Event()
        app.state.draining = event
    return event


def is_draining(app: Any) -> bool:
    """True once shutdown has begun: the replica takes no new work."""
    event = getattr(app.state, "draining", None)
    return isinstance(event, asyncio.Event) and event.is_set()


async def accepting_work(request: Request) -> None:
    """Route dependency for intake endpoints: 503 ``shutting_down`` (with
    Retry-After) once shutdown has begun, before any other work is done.
    (async: FastAPI would run a plain function in its thread pool.)"""
    if is_draining(request.app):
        raise ShuttingDown()


class _DrainWatch:
    """Cancels the request task when draining starts, for a response that streams."""

    def __init__(self, draining: asyncio.Event, request_task: asyncio.Task[Any]) -> None:
        self.fired = False
        self._draining = draining
        self._request_task = request_task
        self._watcher = asyncio.create_task(self._watch(), name="drain-watch")

    async def _watch(self) -> None:
        await self._draining.wait()
        self.fired = True
        self._request_task.cancel()

    def consumed(self) -> bool:
        """After a CancelledError: True when it was only ours (then it is absorbed)."""
        return self.fired and self._request_task.uncancel() == 0

    def close(self) -> None:
        self._watcher.cancel()


def _draining_event(scope: Scope) -> asyncio.Event | None:
    state = getattr(scope.get("app"), "state", None)
    event = getattr(state, "draining", None)
    return event if isinstance(event, asyncio.Event) else None


def _route_template(scope: Scope) -> str:
    """The matched route's path template: a bounded label for metrics and logs."""
    template = getattr(scope.get("route"), "path", None)
    if template:
        return str(template)
    if scope.get("endpoint") is not None and not scope.get("path_params"):
        return str(scope["path"])  # a plain route (/docs, /openapi.json): path == template
    return "<unmatched>"


def _new_request_id() -> str:
    """32 random hex digits (unique, not secret: no syscall, no UUID object)."""
    return f"{random.getrandbits(128):032x}"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Metric children by label values: labels() takes a lock and builds a key
        # on every call; the set of (method, route, status) is small.
        self._counted: dict[tuple[str, str, str], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else _new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if scope["type"] == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                structlog.contextvars.unbind_contextvars("request_id")
            return

        status = 500
        start = time.perf_counter()
        header = (b"x-request-id", request_id.encode())
        draining = _draining_event(scope)
        watch: _DrainWatch | None = None
        response_started = body_complete = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, watch, response_started, body_complete
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            elif message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    body_complete = True
                elif watch is None and draining is not None and request_task is not None:
                    # A streaming body: end it when the server starts draining.
                    watch = _DrainWatch(draining, request_task)
            await send(message)

        request_task = asyncio.current_task()
        self.metrics.http_in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            if watch is None or not watch.consumed():
                raise
            if not body_complete:
                with contextlib.suppress(OSError):
                    await send(_END_OF_BODY)
        except Exception as exc:
            if response_started:
                raise
            # Handled here rather than by Starlette's outermost error middleware so
            # the 500 carries X-Request-ID, is counted, and its log has the id.
            log.exception("unhandled_error", path=scope["path"], error=repr(exc))
            response = problem(
                Request(scope), status=500, code="internal_error", detail="Internal server error"
            )
            await response(scope, receive, send_wrapper)
        finally:
            if watch is not None:
                watch.close()
            elapsed = time.perf_counter() - start
            self.metrics.http_in_flight.dec()
            template = _route_template(scope)
            method = scope["method"]
            counted = self._counted.get((method, template, str(status)))
            if counted is None:
                counted = self.metrics.http_requests.labels(method, template, str(status))
                self._counted[(method, template, str(status))] = counted
            counted.inc()
            timed = self._timed.get((method, template))
            if timed is None:
                timed = self._timed[(method, template)] = self.metrics.http_latency.labels(
                    method, template
                )
            timed.observe(elapsed)
            if scope["path"] not in _QUIET_PATHS and _access_log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    method=method,
                    path=scope["path"],
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id")

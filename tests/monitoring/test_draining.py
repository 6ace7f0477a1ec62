"""On shutdown, open streaming responses end cleanly at once; others finish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.types import Message

from tests.fixtures.process import async_wait_for
from ymera.middleware import RequestContextMiddleware, drain_signal
from ymera.monitoring.metrics import Metrics


class Probe:
    """What the endpoints saw."""

    def __init__(self) -> None:
        self.stream_cancelled = False
        self.slow_entered = asyncio.Event()
        self.release_slow = asyncio.Event()


def _app(probe: Probe) -> Starlette:
    async def stream(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            try:
                await asyncio.Event().wait()  # a stream that never ends by itself
            except asyncio.CancelledError:
                probe.stream_cancelled = True
                raise

        return StreamingResponse(body(), media_type="text/event-stream")

    async def slow(request: Request) -> PlainTextResponse:
        probe.slow_entered.set()
        await probe.release_slow.wait()
        return PlainTextResponse("done")

    return Starlette(
        routes=[Route("/stream", stream), Route("/slow", slow)],
        middleware=[Middleware(RequestContextMiddleware, metrics=Metrics())],
    )


class Exchange:
    """One request driven through the raw ASGI interface, like a server does."""

    def __init__(self, app: Starlette, path: str, spec_version: str) -> None:
        self.sent: list[Message] = []
        self._disconnected = asyncio.Event()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": spec_version},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test")],
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 80),
        }
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    async def _receive(self) -> Message:
        if not getattr(self, "_body_sent", False):
            self._body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._disconnected.wait()  # the client stays connected
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        self.sent.append(message)

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def complete(self) -> bool:
        last = self.sent[-1] if self.sent else {}
        return last.get("type") == "http.response.body" and not last.get("more_body", False)


async def _started_streaming(exchange: Exchange) -> bool:
    return b"first" in exchange.body()


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_draining_ends_an_open_stream_cleanly(spec_version: str) -> None:
    """Starlette streams differently for ASGI spec < 2.4 (a task group listening for
    disconnect) and >= 2.4; both must end when the server drains."""
    probe = Probe()
    app = _app(probe)
    draining = drain_signal(app)
    exchange = Exchange(app, "/stream", spec_version)
    await async_wait_for(lambda: _started_streaming(exchange), timeout=5, what="first chunk")
    assert not exchange.complete()

    draining.set()
    await asyncio.wait_for(exchange.task, timeout=5)

    assert exchange.complete(), exchange.sent
    assert exchange.body() == b"data: first\n\n"
    assert probe.stream_cancelled
    assert exchange.sent[0]["status"] == 200
    assert dict(exchange.sent[0]["headers"])[b"x-request-id"]


async def test_draining_lets_a_request_in_flight_finish() -> None:
    probe = Probe()
    app = _app(probe)
    drain_signal(app).set()
    exchange = Exchange(app, "/slow", "2.3")
    await asyncio.wait_for(probe.slow_entered.wait(), timeout=5)

    probe.release_slow.set()
    await asyncio.wait_for(exchange.task, timeout=5)

    assert exchange.complete()
    assert exchange.body() == b"done"


async def test_a_cancellation_that_is_not_the_drain_propagates() -> None:
    """The server cancelling a request (its graceful-shutdown timeout, say) must not
    be mistaken for the drain and swallowed."""
    probe = Probe()
    app = _app(probe)
    drain_signal(app)  # exists but is never set
    exchange = Exchange(app, "/stream", "2.3")
    await async_wait_for(lambda: _started_streaming(exchange), timeout=5, what="first chunk")

    exchange.task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await exchange.task
    assert exchange.task.cancelled()
    assert not exchange.complete()

"""A real HTTP server for the harness app, for tests that need true streaming.

httpx's in-process ASGITransport collects the whole response before returning
it, so an endless SSE stream never arrives; these tests serve the harness app
(whose lifespan the harness already runs) with uvicorn on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from tests.bus.support import wait_until
from tests.conftest import AppHarness


@dataclass
class LiveServer:
    harness: AppHarness
    client: httpx.AsyncClient
    base_url: str


@pytest.fixture
async def live(harness: AppHarness) -> AsyncIterator[LiveServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        harness.app,
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done(), timeout=10, what="uvicorn to start")
        if task.done():
            task.result()  # raises the startup error
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            yield LiveServer(harness=harness, client=client, base_url=base_url)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        sock.close()

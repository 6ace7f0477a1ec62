"""Stopping a worker whose server is unreachable: nothing to tell the server and
nothing held, so it stops at once instead of waiting for a connection to flush a
`drain` frame into (it waited about six seconds)."""

from __future__ import annotations

import asyncio
import socket

from tests.fixtures.waiting import wait_until
from ymera.worker import TaskContext, Worker


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


async def test_a_disconnected_idle_worker_stops_promptly() -> None:
    worker = Worker(
        f"http://127.0.0.1:{_closed_port()}", "ymk_unused", reconnect_base=0.05, reconnect_cap=0.1
    )

    @worker.handler("t")
    async def handle(ctx: TaskContext) -> dict[str, object]:
        return {}

    job = asyncio.create_task(worker.serve())
    await wait_until(lambda: worker._stop is not None, timeout=5, what="the worker to start")
    worker.stop()
    # Well under the one second the drain frame's flush used to wait, let alone six.
    await asyncio.wait_for(job, 0.9)
    assert not worker.connected.is_set()
    assert worker._outbox is not None
    assert worker._outbox.empty()

"""Model work runs on a daemon thread, so a shutdown never waits for it (no
semantic extra needed: the thread helper is exercised with a stand-in)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from ymera.knowledge.semantic import _in_daemon_thread


async def test_work_runs_on_a_daemon_thread_and_returns_its_result() -> None:
    def encode(texts: Sequence[str]) -> list[bytes]:
        assert threading.current_thread().daemon
        return [t.encode() for t in texts]

    assert await _in_daemon_thread(encode, ["a", "b"]) == [b"a", b"b"]


async def test_errors_reach_the_caller() -> None:
    def broken(texts: Sequence[str]) -> list[bytes]:
        raise ValueError("no model")

    with pytest.raises(ValueError, match="no model"):
        await _in_daemon_thread(broken, ["x"])


async def test_a_cancelled_caller_does_not_wait_for_the_thread() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(texts: Sequence[str]) -> list[bytes]:
        started.set()
        release.wait(30)
        return []

    call = asyncio.ensure_future(_in_daemon_thread(slow, ["x"]))
    assert await asyncio.to_thread(started.wait, 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, timeout=2)
    assert not release.is_set()  # the thread is still busy; nobody waited for it
    release.set()

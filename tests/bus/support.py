"""Waiting helpers for bus and event tests: poll with a deadline, never sleep to sync."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ymera.bus.base import Message, Subscription


async def wait_until(
    condition: Callable[[], object | Awaitable[object]],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str = "condition",
    context: Callable[[], Any] | None = None,
) -> Any:
    """Evaluate ``condition`` (sync or async) until it is truthy and return it;
    fail after ``timeout`` seconds with the last value seen and ``context()``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        last = result
        if result:
            return result
        if time.monotonic() >= deadline:
            extra = f"; context: {context()!r}" if context is not None else ""
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; last: {last!r}{extra}"
            )
        await asyncio.sleep(interval)


async def collect(sub: Subscription, count: int, *, timeout: float = 5.0) -> list[Message]:
    """Read exactly ``count`` messages from ``sub``; fail with what arrived on timeout."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"got {len(got)} of {count} messages in {timeout}s: {[m.data for m in got]!r}"
            )
        message = await sub.get(timeout=remaining)
        if message is not None:
            got.append(message)
    return got

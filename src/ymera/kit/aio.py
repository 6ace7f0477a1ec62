"""Small asyncio helpers shared by the background loops."""

from __future__ import annotations

import asyncio


async def wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()

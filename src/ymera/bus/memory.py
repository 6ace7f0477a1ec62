"""In-process bus: one replica, no dependencies."""

from __future__ import annotations

from typing import Any

from ymera.bus.base import EventBus


class MemoryBus(EventBus):
    name = "memory"

    async def publish(self, channel: str, data: dict[str, Any]) -> bool:
        self._dispatch(channel, data)
        return True

    async def publish_many(self, channel: str, items: list[dict[str, Any]]) -> bool:
        self._dispatch_many(channel, items)
        return True

    async def ping(self) -> bool:
        return True

"""The event bus: fire-and-forget pub/sub between components and replicas.

The bus carries notifications, not the record of truth: the database (the event
outbox) is. A subscriber that falls behind, or a bus that loses its connection,
marks the subscription ``lagged`` so the consumer can catch up from the
database instead of silently missing messages.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("ymera.bus")


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    data: dict[str, Any]


class Subscription:
    """Messages for one subscriber, in a bounded queue.

    When the queue is full the oldest message is dropped and :attr:`lagged`
    is set; the consumer should then resynchronise from the database and call
    :meth:`clear_lag`.
    """

    def __init__(self, channels: tuple[str, ...], maxsize: int) -> None:
        self.channels = channels
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=maxsize)
        self.lagged = False
        self.closed = False
        self.dropped = 0

    def deliver(self, message: Message) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self._queue.get_nowait()
            self._queue.put_nowait(message)
            self.dropped += 1
            self.lagged = True

    def mark_lagged(self) -> None:
        self.lagged = True

    def clear_lag(self) -> None:
        self.lagged = False

    async def get(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def get_nowait(self) -> Message | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Message]:
        while not self.closed:
            yield await self._queue.get()


class EventBus(ABC):
    """Publish/subscribe by channel name."""

    name: str = "bus"

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect; called once from the app's lifespan."""

    async def close(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.closed = True
        self._subs.clear()

    @abstractmethod
    async def publish(self, channel: str, data: dict[str, Any]) -> bool:
        """Publish; returns False (and logs) when the message could not be sent."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the bus can carry messages right now."""

    async def _on_first_subscriber(self, channel: str) -> None:  # noqa: B027
        """Hook for implementations that subscribe upstream lazily."""

    async def _on_last_unsubscribe(self, channel: str) -> None:  # noqa: B027
        """Hook for implementations that unsubscribe upstream."""

    def _dispatch(self, channel: str, data: dict[str, Any]) -> int:
        subs = self._subs.get(channel)
        if not subs:
            return 0
        message = Message(channel, data)
        for sub in tuple(subs):
            sub.deliver(message)
        return len(subs)

    def _mark_all_lagged(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.mark_lagged()

    @asynccontextmanager
    async def subscribe(self, *channels: str, maxsize: int = 10_000) -> AsyncIterator[Subscription]:
        """Subscribe to channels; messages published after entry are delivered."""
        sub = Subscription(channels, maxsize)
        try:
            for channel in channels:
                subs = self._subs.setdefault(channel, set())
                subs.add(sub)
                if len(subs) == 1:
                    await self._on_first_subscriber(channel)
            yield sub
        finally:
            sub.closed = True
            for channel in channels:
                current = self._subs.get(channel)
                if current is None:
                    continue
                current.discard(sub)
                if not current:
                    del self._subs[channel]
                    try:
                        await self._on_last_unsubscribe(channel)
                    except Exception as exc:  # the subscriber is gone either way
                        log.warning("bus_unsubscribe_failed", channel=channel, error=repr(exc))

    def subscriber_count(self, channel: str) -> int:
        return len(self._subs.get(channel, ()))

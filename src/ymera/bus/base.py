"""The event bus: fire-and-forget pub/sub between components and replicas.

The bus carries notifications, not the record of truth: the database (the event
outbox) is. A subscriber that falls behind, or a bus that loses its connection,
marks the subscription ``lagged`` so the consumer can catch up from the
database instead of silently missing messages.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
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
    """Messages for one subscriber (a single reader), in a bounded buffer.

    When the buffer is full the oldest message is dropped and :attr:`lagged` is
    set; the consumer should then resynchronise from the database and call
    :meth:`clear_lag`. Marking a subscription lagged also wakes a reader that
    is waiting in :meth:`get` (it returns ``None`` once), so a consumer notices
    a reconnect at once instead of at its next timeout.
    """

    def __init__(self, channels: tuple[str, ...], maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.channels = channels
        self.maxsize = maxsize
        self._buffer: deque[Message] = deque()
        self._signal = asyncio.Event()
        self._woken = False
        self.lagged = False
        self.closed = False
        self.dropped = 0

    def deliver(self, message: Message) -> None:
        if self.closed:
            return
        if len(self._buffer) >= self.maxsize:
            self._buffer.popleft()
            self.dropped += 1
            self.lagged = True
        self._buffer.append(message)
        self._signal.set()

    def deliver_many(self, messages: list[Message]) -> None:
        """:meth:`deliver` each of ``messages``, in order (one wake-up)."""
        if self.closed or not messages:
            return
        buffer = self._buffer
        buffer.extend(messages)
        over = len(buffer) - self.maxsize
        if over > 0:
            for _ in range(over):
                buffer.popleft()
            self.dropped += over
            self.lagged = True
        self._signal.set()

    def mark_lagged(self) -> None:
        self.lagged = True
        self._woken = True
        self._signal.set()

    def clear_lag(self) -> None:
        self.lagged = False

    def close(self) -> None:
        self.closed = True
        self._signal.set()

    def pending(self) -> int:
        """How many messages wait to be read."""
        return len(self._buffer)

    async def get(self, timeout: float | None = None) -> Message | None:
        """The next message; ``None`` after ``timeout`` seconds, once after the
        subscription was marked lagged, or when it is closed and drained."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._woken:
                self._woken = False
                return None
            if self.closed:
                return None
            self._signal.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._signal.wait(), remaining)
            except TimeoutError:
                return None

    def get_nowait(self) -> Message | None:
        return self._buffer.popleft() if self._buffer else None

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Message]:
        while True:
            message = await self.get()
            if message is not None:
                yield message
            elif self.closed:
                return


class EventBus(ABC):
    """Publish/subscribe by channel name.

    Contract (tested against every implementation): a message published after
    ``subscribe`` has been entered reaches every subscriber of its channel; a
    slow or departed subscriber never blocks a publisher; publishing to a
    channel without subscribers is a no-op.
    """

    name: str = "bus"

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect; called once from the app's lifespan."""

    async def close(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.close()
        self._subs.clear()

    @abstractmethod
    async def publish(self, channel: str, data: dict[str, Any]) -> bool:
        """Publish; returns False (and logs) when the message could not be sent."""

    async def publish_many(self, channel: str, items: list[dict[str, Any]]) -> bool:
        """Publish several messages in order; False at the first that could not be sent."""
        for data in items:
            if not await self.publish(channel, data):
                return False
        return True

    @abstractmethod
    async def ping(self) -> bool:
        """True when the bus can carry messages right now."""

    async def _on_subscribe(self, channel: str, *, first: bool) -> None:  # noqa: B027
        """Hook for implementations that subscribe upstream; return once a message
        published from now on will be delivered to the channel's subscribers."""

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

    def _dispatch_many(self, channel: str, items: list[dict[str, Any]]) -> int:
        """:meth:`_dispatch` each of ``items``, in order."""
        subs = self._subs.get(channel)
        if not subs or not items:
            return 0
        messages = [Message(channel, data) for data in items]
        for sub in tuple(subs):
            sub.deliver_many(messages)
        return len(subs)

    def _mark_lagged(self, channel: str) -> None:
        for sub in self._subs.get(channel, ()):
            sub.mark_lagged()

    def _mark_all_lagged(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.mark_lagged()

    @asynccontextmanager
    async def subscribe(self, *channels: str, maxsize: int = 10_000) -> AsyncIterator[Subscription]:
        """Subscribe to channels; messages published after entry are delivered."""
        sub = Subscription(tuple(dict.fromkeys(channels)), maxsize)
        try:
            for channel in sub.channels:
                subs = self._subs.setdefault(channel, set())
                subs.add(sub)
                await self._on_subscribe(channel, first=len(subs) == 1)
            yield sub
        finally:
            sub.close()
            for channel in sub.channels:
                current = self._subs.get(channel)
                if current is None or sub not in current:
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

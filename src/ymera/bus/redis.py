"""Redis pub/sub bus for several replicas.

One pub/sub connection per process fans messages out to local subscribers. When
the connection drops, a reader loop reconnects with backoff and jitter and
resubscribes every channel. Every subscription is marked lagged when the drop is
noticed and again once Redis confirms its channel is live again, because
messages published meanwhile are gone (consumers catch up from the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import RedisError

from ymera.bus.base import EventBus
from ymera.kit import jsonx

log = structlog.get_logger("ymera.bus.redis")

_CONTROL = "__bus__"


class RedisBus(EventBus):
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ymera:",
        reconnect_base: float = 0.1,
        reconnect_cap: float = 5.0,
        confirm_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = f"{prefix}bus:"
        self._reconnect_base = reconnect_base
        self._reconnect_cap = reconnect_cap
        self._confirm_timeout = confirm_timeout
        # Publishing retries a little (a pooled connection can be stale after a
        # Redis restart); the pub/sub connection never retries on its own, so
        # every drop surfaces in the reader loop, which resubscribes and marks
        # subscriptions lagged instead of redis-py silently resubscribing.
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=10,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2),
        )
        self._sub_client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 0),
        )
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._lock = asyncio.Lock()
        # full channel name -> resolved when Redis confirms the subscription
        self._confirm_waiters: dict[str, asyncio.Future[None]] = {}
        # channels resubscribed after a reconnect; lagged once Redis confirms them
        self._resubscribing: set[str] = set()
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_loop(), name="redis-bus-reader")
        # Do not fail startup if Redis is briefly away: the reader keeps trying.
        await self.wait_connected(5)

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        self._connected.clear()
        await self._close_pubsub()
        await self._client.aclose()
        await self._sub_client.aclose()
        for waiter in self._confirm_waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        await super().close()

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def publish(self, channel: str, data: dict[str, Any]) -> bool:
        payload = jsonx.dumps(data)
        try:
            await self._client.publish(self.prefix + channel, payload)
        except (RedisError, OSError) as exc:
            log.warning("bus_publish_failed", channel=channel, error=repr(exc))
            return False
        return True

    async def publish_many(self, channel: str, items: list[dict[str, Any]]) -> bool:
        """One round trip for the whole batch (a pipeline, in order)."""
        if not items:
            return True
        full = self.prefix + channel
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for data in items:
                    pipe.publish(full, jsonx.dumps(data))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("bus_publish_failed", channel=channel, count=len(items), error=repr(exc))
            return False
        return True

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def _on_subscribe(self, channel: str, *, first: bool) -> None:
        full = self.prefix + channel
        if not first:
            # Another subscriber is activating this channel upstream: wait for it,
            # so this one, too, receives everything published after it entered.
            pending = self._confirm_waiters.get(full)
            if pending is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pending), self._confirm_timeout)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm_waiters[full] = waiter
        try:
            async with self._lock:
                if self._pubsub is None or not self._connected.is_set():
                    return  # the reader loop subscribes it when it (re)connects
                try:
                    await self._pubsub.subscribe(full)
                except (RedisError, OSError) as exc:
                    log.warning("bus_subscribe_deferred", channel=channel, error=repr(exc))
                    return
            # Redis confirms a subscription once it is active; wait for that.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), self._confirm_timeout)
        finally:
            if self._confirm_waiters.get(full) is waiter:
                del self._confirm_waiters[full]
            if not waiter.done():
                waiter.set_result(None)  # release subscribers waiting behind this one

    async def _on_last_unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if self._subs.get(channel):
                return  # a new subscriber arrived meanwhile; keep the channel
            if self._pubsub is not None and self._connected.is_set():
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(self.prefix + channel)

    async def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None

    async def _connect(self, *, reconnect: bool) -> None:
        async with self._lock:
            await self._close_pubsub()
            pubsub = self._sub_client.pubsub()
            channels = [self.prefix + c for c in self._subs]
            if reconnect:
                self._resubscribing = set(channels)
            await pubsub.subscribe(self.prefix + _CONTROL, *channels)
            self._pubsub = pubsub

    async def _read_loop(self) -> None:
        attempt = 0
        connected_before = False
        while not self._closing:
            try:
                await self._connect(reconnect=connected_before)
                if connected_before:
                    self.reconnects += 1
                    log.info("bus_reconnected", attempts=attempt)
                connected_before = True
                attempt = 0
                self._connected.set()
                await self._pump()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: drop the connection and retry
                self._connected.clear()
                if self._closing:
                    return
                attempt += 1
                self._mark_all_lagged()
                delay = min(self._reconnect_cap, self._reconnect_base * 2 ** min(attempt - 1, 10))
                delay *= 0.5 + random.random() / 2
                log.warning("bus_disconnected", error=repr(exc), retry_in=round(delay, 3))
                await asyncio.sleep(delay)

    async def _pump(self) -> None:
        control = self.prefix + _CONTROL
        plen = len(self.prefix)
        while not self._closing:
            msg = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
            if msg is None:
                continue
            raw_channel = msg["channel"]
            channel = raw_channel.decode() if isinstance(raw_channel, bytes) else raw_channel
            kind = msg.get("type")
            if kind == "subscribe":
                self._on_confirmed(channel)
                continue
            if kind != "message" or channel == control:
                continue
            try:
                data = jsonx.loads(msg["data"])
            except (ValueError, TypeError):
                log.warning("bus_bad_message", channel=channel)
                continue
            self._dispatch(channel[plen:], data)

    def _on_confirmed(self, channel: str) -> None:
        waiter = self._confirm_waiters.get(channel)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if channel in self._resubscribing:
            # Messages published while the connection was down are gone; now
            # that the channel is live again, tell its subscribers to catch up.
            self._resubscribing.discard(channel)
            self._mark_lagged(channel[len(self.prefix) :])

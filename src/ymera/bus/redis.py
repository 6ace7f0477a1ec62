"""Redis pub/sub bus for several replicas.

One pub/sub connection per process fans messages out to local subscribers. When
the connection drops, a reader loop reconnects with backoff and jitter and
resubscribes every channel; every subscription is marked lagged because
messages published meanwhile are gone (consumers catch up from the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from ymera.bus.base import EventBus

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
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = f"{prefix}bus:"
        self._reconnect_base = reconnect_base
        self._reconnect_cap = reconnect_cap
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._lock = asyncio.Lock()
        self._confirm_waiters: dict[str, asyncio.Future[None]] = {}

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_loop(), name="redis-bus-reader")
        # Do not fail startup if Redis is briefly away: the reader keeps trying.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=5)

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._close_pubsub()
        await self._client.aclose()
        await super().close()

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def publish(self, channel: str, data: dict[str, Any]) -> bool:
        payload = json.dumps(data, separators=(",", ":"), default=str)
        try:
            await self._client.publish(self.prefix + channel, payload)
        except (RedisError, OSError) as exc:
            log.warning("bus_publish_failed", channel=channel, error=repr(exc))
            return False
        return True

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def _on_first_subscriber(self, channel: str) -> None:
        full = self.prefix + channel
        waiter = asyncio.get_running_loop().create_future()
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
                await asyncio.wait_for(waiter, timeout=5)
        finally:
            self._confirm_waiters.pop(full, None)

    async def _on_last_unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if self._pubsub is not None and self._connected.is_set():
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(self.prefix + channel)

    async def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None

    async def _connect(self) -> None:
        async with self._lock:
            await self._close_pubsub()
            pubsub = self._client.pubsub()
            channels = [self.prefix + _CONTROL] + [self.prefix + c for c in self._subs]
            await pubsub.subscribe(*channels)
            self._pubsub = pubsub

    async def _read_loop(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                await self._connect()
                if attempt:
                    log.info("bus_reconnected", attempts=attempt)
                    self._mark_all_lagged()
                attempt = 0
                self._connected.set()
                await self._pump()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._connected.clear()
                if self._closing:
                    return
                attempt += 1
                self._mark_all_lagged()
                delay = min(self._reconnect_cap, self._reconnect_base * 2 ** min(attempt, 10))
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
            if msg.get("type") == "subscribe":
                waiter = self._confirm_waiters.get(channel)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                continue
            if msg.get("type") != "message":
                continue
            try:
                data = json.loads(msg["data"])
            except (ValueError, TypeError):
                log.warning("bus_bad_message", channel=channel)
                continue
            if channel == control:
                continue
            self._dispatch(channel[plen:], data)

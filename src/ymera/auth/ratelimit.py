"""Rate limits per principal and per client address, on the ``limits`` library.

Storage is in memory for one replica or Redis for several (shared counters).
If Redis is unreachable the limiter fails open: a limiter outage must not take
the API down with it.
"""

from __future__ import annotations

import math
import time

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from ymera.config import Settings
from ymera.errors import TooManyRequests

log = structlog.get_logger("ymera.ratelimit")


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit.enabled
        self.default = parse(settings.rate_limit.default)
        self.login = parse(settings.rate_limit.login)
        use_redis = settings.rate_limit.storage == "redis" or (
            settings.rate_limit.storage == "auto" and settings.redis_url
        )
        self.storage: Storage
        if use_redis and settings.redis_url:
            url = settings.redis_url.replace("redis://", "async+redis://", 1).replace(
                "rediss://", "async+rediss://", 1
            )
            self.storage = RedisStorage(
                url, key_prefix=f"{settings.redis_prefix}rl", implementation="redispy"
            )
        else:
            self.storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self.storage)

    async def hit(self, item: RateLimitItem, key: str) -> None:
        """Count one hit; raise 429 with Retry-After when over the limit."""
        if not self.enabled:
            return
        try:
            allowed = await self._limiter.hit(item, key)
            if allowed:
                return
            stats = await self._limiter.get_window_stats(item, key)
        except Exception as exc:  # fail open when the storage is down
            log.warning("rate_limit_storage_error", error=repr(exc))
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests(
            f"Rate limit exceeded ({item}); retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )

    async def reset(self) -> None:
        await self.storage.reset()

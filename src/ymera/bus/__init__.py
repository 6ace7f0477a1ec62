"""Event bus implementations and the factory that picks one from settings."""

from ymera.bus.base import EventBus, Message, Subscription
from ymera.bus.memory import MemoryBus
from ymera.config import Settings


def create_bus(settings: Settings) -> EventBus:
    if settings.redis_url:
        from ymera.bus.redis import RedisBus

        return RedisBus(settings.redis_url, prefix=settings.redis_prefix)
    return MemoryBus()


__all__ = ["EventBus", "MemoryBus", "Message", "Subscription", "create_bus"]

"""A short-lived cache of authenticated principals, keyed by credential.

Resolving a credential costs a JWT signature check (or a key hash) and a
database read; under load that is most of a small request. A principal is
reused for at most ``ttl`` seconds (and never past its token's expiry), and
the whole cache is dropped as soon as a change to users, API keys or agents
commits on this replica; other replicas drop theirs when that change's event
reaches them over the bus. So a demotion, deactivation or revocation takes
effect at once on the replica that made it and within the event relay's delay
(``ttl`` at the very worst) everywhere else.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ymera.auth.principal import Principal

if TYPE_CHECKING:
    from ymera.state import AppState

# Events whose commit may change what a credential is allowed to do.
INVALIDATING_PREFIXES = ("user.", "api_key.", "agent.deleted")


def invalidates(event_types: Iterable[str]) -> bool:
    return any(t.startswith(INVALIDATING_PREFIXES) for t in event_types)


class PrincipalCache:
    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Principal, float, float]] = OrderedDict()
        self.clears = 0
        # Credentials being resolved now: (the cache's generation then, the result).
        self._pending: dict[str, tuple[int, asyncio.Future[Principal]]] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def get(self, credential: str, *, now: float) -> Principal | None:
        """The cached principal, unless stale or its credential has expired by
        ``now`` (epoch seconds on the app's clock)."""
        entry = self._entries.get(credential)
        if entry is None:
            return None
        principal, until, app_until = entry
        if (
            time.monotonic() >= until
            or now >= app_until
            or (principal.expires_at is not None and now >= principal.expires_at)
        ):
            self._entries.pop(credential, None)
            return None
        return principal

    def put(self, credential: str, principal: Principal, *, now: float) -> None:
        """Remember ``principal`` for ``ttl`` seconds (of real time, and of the
        app's clock from ``now``, so a test moving its clock sees it expire)."""
        if not self.enabled:
            return
        self._entries[credential] = (principal, time.monotonic() + self.ttl, now + self.ttl)
        self._entries.move_to_end(credential)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pending(self, credential: str) -> asyncio.Future[Principal] | None:
        """The resolution of ``credential`` under way, if one started since the
        cache was last dropped (one started before may have read what changed)."""
        entry = self._pending.get(credential)
        if entry is None or entry[0] != self.clears:
            return None
        return entry[1]

    def begin(self, credential: str) -> asyncio.Future[Principal]:
        """Announce a resolution of ``credential``: requests with the same
        credential that miss meanwhile wait for its result (under load, when an
        entry expires, dozens of requests miss at once)."""
        future: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        self._pending[credential] = (self.clears, future)
        return future

    def end(self, credential: str, future: asyncio.Future[Principal]) -> None:
        entry = self._pending.get(credential)
        if entry is not None and entry[1] is future:
            del self._pending[credential]

    def clear(self) -> None:
        self._entries.clear()
        self.clears += 1

    def __len__(self) -> int:
        return len(self._entries)


def install_principal_cache(state: AppState) -> PrincipalCache:
    """Give the app its cache, dropped whenever this process commits a change
    that may affect credentials."""
    cache = PrincipalCache(state.settings.auth.principal_cache_seconds)
    state.extras["principal_cache"] = cache

    def on_commit(types: set[str], _info: dict[Any, Any]) -> None:
        if invalidates(types):
            cache.clear()

    state.db.add_event_listener(on_commit)
    return cache


async def principal_cache_loop(state: AppState, stop: asyncio.Event) -> None:
    """Drop the cache when another replica commits such a change (its event)."""
    from ymera.events.service import EVENTS_CHANNEL

    cache: PrincipalCache | None = state.extras.get("principal_cache")
    if cache is None or not cache.enabled or state.bus.name == "memory":
        return  # one process: its own commits already drop the cache
    async with state.bus.subscribe(EVENTS_CHANNEL) as sub:
        while not stop.is_set():
            message = await sub.get(timeout=1.0)
            if sub.lagged:
                cache.clear()  # messages may have been missed
                sub.clear_lag()
            if message is not None and invalidates([str(message.data.get("type", ""))]):
                cache.clear()

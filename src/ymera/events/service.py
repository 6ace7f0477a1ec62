"""Outbox relay and the resumable event stream.

The relay gives committed events their ``seq`` in commit order and publishes
them on the bus channel :data:`EVENTS_CHANNEL`. The stream replays from the
database after a cursor, then follows the bus; whenever it sees a gap (a lost
or reordered bus message, a lagging subscription, a reconnect) it catches up
from the database, so a client that resumes with ``Last-Event-ID`` gets every
matching event exactly once and in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from ymera.bus.base import EventBus
from ymera.db.database import Database
from ymera.events import repository
from ymera.events.schemas import EventOut
from ymera.models.events import Event

EVENTS_CHANNEL = "events"
log = structlog.get_logger("ymera.events")


def json_time(value: datetime) -> str:
    """A datetime as pydantic writes it in JSON (UTC as ``Z``), without pydantic:
    the relay formats every event this way, thousands per second."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def event_payload(event: Event) -> dict[str, Any]:
    """An event as the API and the bus carry it (``EventOut`` in JSON form)."""
    return {
        "seq": event.seq,
        "type": event.type,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "actor": event.actor,
        "data": event.data,
        "created_at": json_time(event.created_at),
    }


async def relay_once(db: Database, bus: EventBus) -> int:
    """Publish the events this process committed (numbered at commit), in seq
    order; returns how many were published.

    Publishing stops at the first failure: the events are safe in the database
    and streams catch up from there (the bus carries notifications, not the
    record).
    """
    count = 0
    while db.publish_queue:
        # Commits that overlapped (PostgreSQL) may have queued out of order, and a
        # transaction of this process that took smaller numbers may not have
        # reached Python yet: what is numbered after it waits for it to end.
        batches = sorted(
            (db.publish_queue.popleft() for _ in range(len(db.publish_queue))),
            key=lambda rows: int(rows[0]["seq"]),
        )
        pending = min(db.numbering, default=None)
        ready = [b for b in batches if pending is None or int(b[0]["seq"]) < pending]
        db.publish_queue.extend(batches[len(ready) :])
        if not ready:
            break
        times: dict[datetime, str] = {}
        payloads = [event_payload_from_row(row, times) for rows in ready for row in rows]
        if not await bus.publish_many(EVENTS_CHANNEL, payloads):
            log.warning("events_not_published", first_seq=payloads[0]["seq"])
        count += len(payloads)
        if len(ready) < len(batches):
            break
    return count


def event_payload_from_row(
    row: dict[str, Any], times: dict[datetime, str] | None = None
) -> dict[str, Any]:
    """``event_payload`` of an event's inserted row (a dict); ``times``: instants
    already formatted (a commit's events share one)."""
    at = row["created_at"]
    if times is None:
        created = json_time(at)
    else:
        created = times.get(at) or times.setdefault(at, json_time(at))
    return {
        "seq": row["seq"],
        "type": row["type"],
        "resource_type": row["resource_type"],
        "resource_id": row["resource_id"],
        "actor": row["actor"],
        "data": row["data"],
        "created_at": created,
    }


@dataclass(frozen=True)
class EventFilter:
    """Which events a stream or list returns. ``types`` entries ending in ``.*``
    match a prefix (``task.*``)."""

    types: tuple[str, ...] = ()
    resource_type: str | None = None
    resource_id: str | None = None
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact = frozenset(t for t in self.types if not t.endswith("*"))
        prefixes = tuple(t.rstrip("*") for t in self.types if t.endswith("*"))
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_prefixes", prefixes)

    def matches(self, data: dict[str, Any]) -> bool:
        if self.resource_type is not None and data.get("resource_type") != self.resource_type:
            return False
        if self.resource_id is not None and data.get("resource_id") != self.resource_id:
            return False
        if not self.types:
            return True
        etype = str(data.get("type", ""))
        return etype in self._exact or any(etype.startswith(p) for p in self._prefixes)

    def query_args(self) -> dict[str, Any]:
        return {
            "types": tuple(self._exact),
            "type_prefixes": self._prefixes,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
        }


async def list_events(
    db: Database, *, flt: EventFilter, after: int, limit: int
) -> Sequence[EventOut]:
    async with db.transaction(readonly=True) as session:
        rows = await repository.list_after(session, after=after, limit=limit, **flt.query_args())
        return [EventOut.model_validate(r) for r in rows]


async def current_seq(db: Database) -> int:
    async with db.transaction(readonly=True) as session:
        return await repository.last_seq(session)


async def stream_events(
    db: Database,
    bus: EventBus,
    *,
    flt: EventFilter,
    after: int | None,
    keepalive: float = 15.0,
    page_size: int = 500,
) -> AsyncIterator[list[dict[str, Any]] | None]:
    """Yield the matching event payloads after ``after``, in order, forever, as
    lists (what is already at hand goes out together: one write for many events
    under load); ``None`` is a keepalive.

    The first item is always ``None``, yielded as soon as the stream is live: an
    event committed from then on will be delivered. ``after=None`` starts at the
    live end (no replay). Every ``keepalive`` seconds without a message the
    stream also checks the database, so an event whose bus message was lost is
    delivered at the latest then, even when no later event reveals the gap.
    """
    async with bus.subscribe(EVENTS_CHANNEL) as sub:
        cursor = await current_seq(db) if after is None else after
        yield None

        async def catch_up() -> AsyncIterator[list[dict[str, Any]]]:
            nonlocal cursor
            sub.clear_lag()
            target = await current_seq(db)
            while cursor < target:
                async with db.transaction(readonly=True) as session:
                    rows = await repository.list_after(
                        session, after=cursor, limit=page_size, **flt.query_args()
                    )
                rows = [r for r in rows if r.seq is not None and r.seq <= target]
                if rows:
                    yield [event_payload(row) for row in rows]
                    cursor = int(rows[-1].seq or cursor)
                if len(rows) < page_size:
                    cursor = max(cursor, target)

        async for page in catch_up():
            yield page
        while True:
            if sub.lagged:
                async for page in catch_up():
                    yield page
            message = await sub.get(timeout=keepalive)
            if message is None:
                if sub.lagged:
                    continue  # woken by a reconnect or an overflow: catch up first
                async for page in catch_up():
                    yield page
                yield None
                continue
            batch: list[dict[str, Any]] = []
            while message is not None:
                seq = int(message.data.get("seq") or 0)
                if seq > cursor + 1:  # a gap: what is missing comes from the database
                    if batch:
                        yield batch
                        batch = []
                    async for page in catch_up():
                        yield page
                if seq > cursor:
                    cursor = seq
                    if flt.matches(message.data):
                        batch.append(message.data)
                message = None if sub.lagged else sub.get_nowait()
            if batch:
                yield batch

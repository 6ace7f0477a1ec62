"""The transactional outbox: events commit with the change, then get a gap-free ``seq``
in commit order and are published on the bus; a rollback leaves nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.fixtures.backends import Backend
from tests.fixtures.waiting import collect
from ymera.bus import EventBus, MemoryBus
from ymera.bus.base import Message, Subscription
from ymera.bus.redis import RedisBus
from ymera.db.database import Database
from ymera.events.outbox import flush_events, record_event
from ymera.events.service import EVENTS_CHANNEL, current_seq, relay_once
from ymera.models.events import Event


@dataclass
class Replica:
    """What one server process has: its own engine and its own bus connection."""

    db: Database
    bus: EventBus


ReplicaFactory = Callable[[], Awaitable[Replica]]


@pytest.fixture
async def replicas(backend: Backend) -> AsyncIterator[ReplicaFactory]:
    """Make replicas on the test's database and bus. On the memory bus they share one
    in-process bus (the only way two relays can reach one subscriber there)."""
    made: list[Replica] = []
    shared_memory = MemoryBus()

    async def make() -> Replica:
        bus: EventBus
        if backend.redis_url:
            bus = RedisBus(backend.redis_url, prefix=backend.redis_prefix)
            await bus.start()
        else:
            bus = shared_memory
        replica = Replica(db=Database(backend.database_url), bus=bus)
        made.append(replica)
        return replica

    try:
        yield make
    finally:
        for replica in made:
            await replica.bus.close()
            await replica.db.dispose()


async def write_events(db: Database, tx: int, count: int) -> None:
    """One unit of work recording ``count`` events, flushing between them so that
    concurrent transactions interleave their inserts."""
    async with db.transaction() as session:
        for i in range(count):
            record_event(
                session,
                type="test.written",
                resource_type="tx",
                resource_id=str(tx),
                data={"tx": tx, "i": i},
            )
            await session.flush()


async def relay_until_idle(db: Database, bus: EventBus) -> int:
    total = 0
    while count := await relay_once(db, bus):
        total += count
    return total


async def all_events(db: Database) -> list[Event]:
    async with db.transaction(readonly=True) as session:
        rows = await session.execute(select(Event).order_by(Event.seq))
        return list(rows.scalars().all())


def drain(sub: Subscription) -> list[Message]:
    got = []
    while (message := sub.get_nowait()) is not None:
        got.append(message)
    return got


async def test_committed_event_is_sequenced_and_published(replicas: ReplicaFactory) -> None:
    r = await replicas()
    base = await current_seq(r.db)
    async with r.bus.subscribe(EVENTS_CHANNEL) as sub:
        async with r.db.transaction() as session:
            record_event(
                session,
                type="thing.created",
                resource_type="thing",
                resource_id="t-1",
                data={"size": 3},
                actor="tester",
            )
        assert r.db.outbox_signal.is_set(), "a commit with events must wake the relay"
        assert await relay_once(r.db, r.bus) == 1
        (message,) = await collect(sub, 1)
        assert await relay_once(r.db, r.bus) == 0  # already published: nothing twice
    payload = message.data
    assert message.channel == EVENTS_CHANNEL
    assert payload["seq"] == base + 1
    assert payload["type"] == "thing.created"
    assert payload["resource_type"] == "thing"
    assert payload["resource_id"] == "t-1"
    assert payload["data"] == {"size": 3}
    assert payload["actor"] == "tester"
    assert payload["created_at"]
    (row,) = [e for e in await all_events(r.db) if e.type == "thing.created"]
    assert row.seq == base + 1
    assert await current_seq(r.db) == base + 1
    assert sub.pending() == 0


class Boom(Exception):
    pass


async def doomed_transaction(db: Database) -> None:
    async with db.transaction() as session:
        record_event(session, type="test.doomed", resource_type="x", resource_id="1")
        await flush_events(session)
        inside = select(func.count()).select_from(Event).where(Event.type == "test.doomed")
        assert (await session.execute(inside)).scalar_one() == 1  # written, not yet committed
        raise Boom


async def test_rolled_back_event_leaves_nothing_and_publishes_nothing(
    replicas: ReplicaFactory,
) -> None:
    r = await replicas()
    base = await current_seq(r.db)

    async with r.bus.subscribe(EVENTS_CHANNEL) as sub:
        with pytest.raises(Boom):
            await doomed_transaction(r.db)
        assert not r.db.outbox_signal.is_set()
        assert await relay_once(r.db, r.bus) == 0
        # A later committed event is the first (and only) thing on the bus and
        # takes the next seq: the rolled-back one was never published nor numbered.
        async with r.db.transaction() as session:
            record_event(session, type="test.kept", resource_type="x", resource_id="2")
        assert await relay_once(r.db, r.bus) == 1
        (message,) = await collect(sub, 1)
    assert message.data["type"] == "test.kept"
    assert message.data["seq"] == base + 1
    assert [e.type for e in await all_events(r.db) if e.type.startswith("test.")] == ["test.kept"]


async def _run_writers_and_relays(
    txs: range, per_writer: int, relays: list[Replica]
) -> tuple[int, list[int]]:
    """Run the writers concurrently while every replica's relay loops; then drain.
    Returns (events relayed in total, how many each relay call published)."""
    done = asyncio.Event()
    calls: list[int] = []

    async def relay_loop(replica: Replica) -> int:
        total = 0
        while not done.is_set():
            count = await relay_once(replica.db, replica.bus)
            calls.append(count)
            total += count
            if not count:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(replica.db.outbox_signal.wait(), 0.05)
                replica.db.outbox_signal.clear()
        return total

    loops = [asyncio.create_task(relay_loop(r)) for r in relays]
    try:
        writer_db = relays[0].db
        await asyncio.gather(*(write_events(writer_db, tx, per_writer) for tx in txs))
    finally:
        done.set()
        relayed = sum(await asyncio.gather(*loops))
    relayed += sum(await asyncio.gather(*(relay_until_idle(r.db, r.bus) for r in relays)))
    return relayed, calls


async def _assert_gap_free(db: Database, base: int, expected: int) -> list[Event]:
    events = [e for e in await all_events(db) if e.type == "test.written"]
    assert len(events) == expected
    seqs = sorted(e.seq for e in events if e.seq is not None)
    assert seqs == list(range(base + 1, base + expected + 1)), "seqs must be unique and gap-free"
    assert await current_seq(db) == base + expected
    # Within one transaction the events keep their order.
    by_tx: dict[int, list[tuple[int, int]]] = {}
    for e in events:
        by_tx.setdefault(e.data["tx"], []).append((e.data["i"], e.seq or 0))
    for tx, pairs in by_tx.items():
        in_seq_order = [i for i, _ in sorted(pairs, key=lambda p: p[1])]
        assert in_seq_order == sorted(in_seq_order), f"tx {tx} reordered: {pairs}"
    return events


async def test_concurrent_writers_get_unique_gap_free_seqs(replicas: ReplicaFactory) -> None:
    r = await replicas()
    base = await current_seq(r.db)
    writers, per_writer = 20, 10
    total = writers * per_writer
    async with r.bus.subscribe(EVENTS_CHANNEL) as sub:
        relayed, _ = await _run_writers_and_relays(range(writers), per_writer, [r])
        assert relayed == total
        published = [m.data["seq"] for m in await collect(sub, total, timeout=15)]
        assert sub.pending() == 0
        assert not sub.lagged
    await _assert_gap_free(r.db, base, total)
    # One relay publishes in seq order, each event exactly once.
    assert published == list(range(base + 1, base + total + 1))


async def test_two_replicas_writing_at_once_get_unique_gap_free_seqs(
    replicas: ReplicaFactory,
) -> None:
    """Two replicas (two engines on one database) commit events at the same time:
    the sequencer's row lock numbers them all once, without gaps, in commit
    order; each replica publishes its own."""
    first, second = await replicas(), await replicas()
    base = await current_seq(first.db)
    writers, per_writer = 10, 10
    total = writers * per_writer
    async with first.bus.subscribe(EVENTS_CHANNEL) as sub:  # the replicas share the bus
        done = asyncio.Event()

        async def relay(replica: Replica) -> int:
            count = 0
            while not done.is_set():
                count += await relay_once(replica.db, replica.bus)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(replica.db.outbox_signal.wait(), 0.05)
                replica.db.outbox_signal.clear()
            return count + await relay_until_idle(replica.db, replica.bus)

        relays = [asyncio.create_task(relay(first)), asyncio.create_task(relay(second))]
        try:
            await asyncio.gather(
                *(write_events((first, second)[tx % 2].db, tx, per_writer) for tx in range(writers))
            )
        finally:
            done.set()
            counts = await asyncio.gather(*relays)
        assert counts == [total // 2, total // 2]  # each published what it committed
        published = [m.data["seq"] for m in await collect(sub, total, timeout=15)]
        assert sub.pending() == 0
    await _assert_gap_free(first.db, base, total)
    assert sorted(published) == list(range(base + 1, base + total + 1))


class DownBus(MemoryBus):
    """A bus that cannot send (as when Redis is away); counts the attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def publish(self, channel: str, data: dict[str, Any]) -> bool:
        self.attempts += 1
        return False

    async def publish_many(self, channel: str, items: list[dict[str, Any]]) -> bool:
        self.attempts += 1  # one batch: one attempt, as RedisBus's pipeline
        return False


async def test_a_bus_outage_loses_nothing(replicas: ReplicaFactory) -> None:
    """Publishing gives up on the first failure; the events are in the database,
    numbered, and the next ones go on being numbered."""
    r = await replicas()
    base = await current_seq(r.db)
    down = DownBus()
    await write_events(r.db, 0, 5)
    assert await relay_once(r.db, down) == 5
    assert down.attempts == 1  # gave up publishing the batch after the first failure
    await write_events(r.db, 1, 3)
    assert await relay_once(r.db, down) == 3
    await _assert_gap_free(r.db, base, 8)


async def test_a_commit_numbers_its_own_events(replicas: ReplicaFactory) -> None:
    """Events are numbered in the committing transaction; the relay only
    publishes them, in order."""
    r = await replicas()
    base = await current_seq(r.db)
    await write_events(r.db, 0, 3)
    seqs = [e.seq for e in await all_events(r.db) if e.type == "test.written"]
    assert seqs == [base + 1, base + 2, base + 3]
    assert await current_seq(r.db) == base + 3
    async with r.bus.subscribe(EVENTS_CHANNEL) as sub:
        assert await relay_once(r.db, r.bus) == 3
        published = [m.data["seq"] for m in await collect(sub, 3)]
    assert published == [base + 1, base + 2, base + 3]
    await _assert_gap_free(r.db, base, 3)


async def test_relay_waits_for_a_transaction_that_took_smaller_numbers(
    replicas: ReplicaFactory,
) -> None:
    """A transaction's commit can reach Python after a later one's (PostgreSQL:
    the next transaction takes the sequencer lock as soon as the first commits):
    the relay holds back what is numbered after a transaction of this process
    that has not ended, so one relay still publishes in seq order."""
    r = await replicas()
    for name in ("first", "second"):
        async with r.db.transaction() as session:
            record_event(session, type=f"test.{name}", resource_type="x", resource_id=name)
    first, second = r.db.publish_queue.popleft(), r.db.publish_queue.popleft()
    assert first[0]["seq"] < second[0]["seq"]
    # As if the first transaction had committed but not yet told this process.
    r.db.publish_queue.append(second)
    r.db.numbering.add(first[0]["seq"])
    async with r.bus.subscribe(EVENTS_CHANNEL) as sub:
        assert await relay_once(r.db, r.bus) == 0
        assert sub.pending() == 0
        assert list(r.db.publish_queue) == [second]  # held, not lost
        r.db.numbering.discard(first[0]["seq"])
        r.db.publish_queue.append(first)
        assert await relay_once(r.db, r.bus) == 2
        published = [m.data["type"] for m in await collect(sub, 2)]
    assert published == ["test.first", "test.second"]
    assert not r.db.numbering  # every transaction that numbered events has ended

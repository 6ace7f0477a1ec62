"""One contract, every bus: the in-process MemoryBus and the RedisBus behave the same."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.fixtures import services
from tests.fixtures.waiting import collect, wait_until
from ymera.bus import EventBus, MemoryBus
from ymera.bus.redis import RedisBus


@pytest.fixture(params=["memory", "redis"])
def bus_kind(request: pytest.FixtureRequest) -> str:
    # Checked in a sync fixture: the service probes run their own event loop.
    if request.param == "redis":
        services.need("redis")
    return str(request.param)


@pytest.fixture
async def bus(bus_kind: str) -> AsyncIterator[EventBus]:
    prefix = ""
    instance: EventBus
    if bus_kind == "memory":
        instance = MemoryBus()
    else:
        prefix = services.unique_name("ymera_test_bus") + ":"
        instance = RedisBus(services.REDIS_URL, prefix=prefix)
    await instance.start()
    try:
        if isinstance(instance, RedisBus):
            assert instance.connected, "RedisBus did not connect to the test Redis"
        yield instance
    finally:
        await instance.close()
        if prefix:
            services.flush_redis_prefix(prefix)


async def upstream_subscribers(bus: EventBus, channel: str) -> int | None:
    """How many Redis connections subscribe to ``channel`` (None on the memory bus)."""
    if not isinstance(bus, RedisBus):
        return None
    client = aioredis.Redis.from_url(services.REDIS_URL)
    try:
        counts = await client.pubsub_numsub(bus.prefix + channel)
    finally:
        await client.aclose()
    return int(counts[0][1])


async def test_publish_then_subscriber_receives_in_order(bus: EventBus) -> None:
    async with bus.subscribe("orders") as sub:
        for n in range(5):
            assert await bus.publish("orders", {"n": n, "text": f"message {n}"}) is True
        got = await collect(sub, 5)
    assert [m.channel for m in got] == ["orders"] * 5
    assert [m.data for m in got] == [{"n": n, "text": f"message {n}"} for n in range(5)]
    assert not sub.lagged


async def test_fan_out_to_fifty_subscribers_on_one_channel(bus: EventBus) -> None:
    async with contextlib.AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(bus.subscribe("fan")) for _ in range(50)]
        assert bus.subscriber_count("fan") == 50
        for n in range(3):
            await bus.publish("fan", {"n": n})
        results = await asyncio.gather(*(collect(s, 3) for s in subs))
    for got in results:
        assert [m.data["n"] for m in got] == [0, 1, 2]
    assert bus.subscriber_count("fan") == 0


async def test_fan_out_across_channels(bus: EventBus) -> None:
    channels = [f"ch{i}" for i in range(5)]
    async with contextlib.AsyncExitStack() as stack:
        per_channel = {
            ch: [await stack.enter_async_context(bus.subscribe(ch)) for _ in range(10)]
            for ch in channels
        }
        everything = await stack.enter_async_context(bus.subscribe(*channels))
        for ch in channels:
            await bus.publish(ch, {"to": ch})
        for ch, subs in per_channel.items():
            for sub in subs:
                (message,) = await collect(sub, 1)
                assert message.channel == ch
                assert message.data == {"to": ch}
        got = await collect(everything, 5)
        assert sorted(m.channel for m in got) == channels
        assert all(m.data == {"to": m.channel} for m in got)
        # Nothing else is queued anywhere: each subscriber saw its channel only.
        assert all(s.pending() == 0 for subs in per_channel.values() for s in subs)
        assert everything.pending() == 0


async def test_subscriber_entering_while_another_is_entering_is_live_on_entry(
    bus: EventBus,
) -> None:
    first_entered = asyncio.Event()
    release = asyncio.Event()
    first_got: list[dict[str, object]] = []

    async def first_subscriber() -> None:
        async with bus.subscribe("join") as sub:
            first_entered.set()
            await release.wait()
            first_got.extend(m.data for m in await collect(sub, 1))

    task = asyncio.create_task(first_subscriber())
    try:
        # Enter the second subscription while the first one may still be
        # activating the channel upstream.
        await wait_until(lambda: bus.subscriber_count("join") == 1, interval=0)
        async with bus.subscribe("join") as second:
            await bus.publish("join", {"n": 1})
            (message,) = await collect(second, 1)
            assert message.data == {"n": 1}
            await wait_until(first_entered.is_set, what="first subscriber entered")
            release.set()
            await asyncio.wait_for(task, 5)
        assert first_got == [{"n": 1}]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_departed_subscriber_does_not_affect_others(bus: EventBus) -> None:
    async with bus.subscribe("room") as stays:
        async with bus.subscribe("room") as leaves:
            await bus.publish("room", {"n": 0})
            assert [m.data for m in await collect(leaves, 1)] == [{"n": 0}]
        assert leaves.closed
        assert bus.subscriber_count("room") == 1
        for n in range(1, 4):
            assert await bus.publish("room", {"n": n}) is True
        got = await collect(stays, 4)
        assert [m.data["n"] for m in got] == [0, 1, 2, 3]
        assert leaves.pending() == 0  # nothing is delivered to a departed subscriber
        assert await leaves.get(timeout=0) is None


async def test_slow_subscriber_overflows_and_is_lagged_without_blocking(bus: EventBus) -> None:
    async with bus.subscribe("firehose", maxsize=5) as slow, bus.subscribe("firehose") as fast:
        started = time.monotonic()
        for n in range(50):
            await asyncio.wait_for(bus.publish("firehose", {"n": n}), timeout=2)
        assert time.monotonic() - started < 5
        got = await collect(fast, 50)
        assert [m.data["n"] for m in got] == list(range(50))
        assert not fast.lagged
        # Every message was handed to both subscribers at once, so the slow one
        # has overflowed by now: it keeps the newest five and knows it lost some.
        assert slow.lagged
        assert slow.dropped == 45
        assert slow.pending() == 5
        kept = [m.data["n"] for m in await collect(slow, 5)]
        assert kept == [45, 46, 47, 48, 49]
        slow.clear_lag()
        await bus.publish("firehose", {"n": 50})
        assert [m.data["n"] for m in await collect(slow, 1)] == [50]
        assert not slow.lagged


async def test_publish_many_delivers_in_order_and_overflows_like_single_publishes(
    bus: EventBus,
) -> None:
    async with bus.subscribe("burst", maxsize=5) as slow, bus.subscribe("burst") as fast:
        assert await bus.publish_many("burst", [{"n": n} for n in range(8)]) is True
        assert await bus.publish_many("burst", []) is True
        assert await bus.publish_many("burst", [{"n": 8}, {"n": 9}]) is True
        got = await collect(fast, 10)
        assert [m.data["n"] for m in got] == list(range(10))
        assert [m.channel for m in got] == ["burst"] * 10
        assert not fast.lagged
        await wait_until(lambda: slow.pending() == 5 and slow.dropped == 5, what="the overflow")
        assert slow.lagged
        assert [m.data["n"] for m in await collect(slow, 5)] == [5, 6, 7, 8, 9]


async def test_last_unsubscribe_stops_delivery(bus: EventBus) -> None:
    async with bus.subscribe("gone") as sub:
        await bus.publish("gone", {"n": 1})
        await collect(sub, 1)
        if isinstance(bus, RedisBus):
            assert await upstream_subscribers(bus, "gone") == 1
    assert bus.subscriber_count("gone") == 0
    if isinstance(bus, RedisBus):

        async def unsubscribed_upstream() -> bool:
            return await upstream_subscribers(bus, "gone") == 0

        await wait_until(unsubscribed_upstream, what="Redis to drop the channel")
    # Published with nobody listening: not kept anywhere, so a later
    # subscriber sees only what is published after it entered.
    assert await bus.publish("gone", {"n": 2}) is True
    async with bus.subscribe("gone") as later:
        await bus.publish("gone", {"n": 3})
        assert [m.data for m in await collect(later, 1)] == [{"n": 3}]
        assert later.pending() == 0
    assert sub.pending() == 0


async def test_resubscribe_right_after_last_unsubscribe_delivers(bus: EventBus) -> None:
    for round_ in range(5):
        async with bus.subscribe("flap") as sub:
            await bus.publish("flap", {"round": round_})
            assert [m.data for m in await collect(sub, 1)] == [{"round": round_}]


async def test_publish_without_subscribers_and_ping(bus: EventBus) -> None:
    assert bus.subscriber_count("nobody") == 0
    assert await bus.publish("nobody", {"hello": "world"}) is True
    assert await bus.ping() is True


async def test_lag_wakes_a_waiting_reader(bus: EventBus) -> None:
    async with bus.subscribe("quiet") as sub:
        reader = asyncio.create_task(sub.get(timeout=30))
        await wait_until(lambda: not reader.done() and bus.subscriber_count("quiet") == 1)
        sub.mark_lagged()
        assert await asyncio.wait_for(reader, 5) is None  # woken long before its timeout
        assert sub.lagged
        await bus.publish("quiet", {"n": 1})
        assert [m.data for m in await collect(sub, 1)] == [{"n": 1}]
        assert await sub.get(timeout=0.01) is None  # a timeout, not a spurious wake

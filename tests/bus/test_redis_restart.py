"""RedisBus against a Redis that dies and comes back, and across replicas."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.fixtures import services
from tests.fixtures.process import LOOPBACK, ManagedProcess, ProcessManager, free_port
from tests.fixtures.waiting import collect, wait_until
from ymera.bus.redis import RedisBus


class PrivateRedis:
    """A redis-server of this test's own on a free loopback port (no persistence)."""

    def __init__(self, procs: ProcessManager, workdir: Path) -> None:
        self.procs = procs
        self.workdir = workdir
        self.port = free_port()
        self.process: ManagedProcess | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    async def start(self) -> None:
        self.starts += 1
        args = [
            "redis-server",
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        self.process = self.procs.start(f"redis-{self.starts}", args, cwd=self.workdir)
        process = self.process

        async def ready() -> bool:
            if not process.alive():
                raise AssertionError(f"redis-server exited\n{process.describe()}")
            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1)
            try:
                return bool(await client.ping())
            except (OSError, aioredis.RedisError):
                return False
            finally:
                await client.aclose()

        await wait_until(ready, timeout=10, what=f"redis-server on port {self.port}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL to the group, reaped


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with ProcessManager(log_dir, grace=5) as procs:
        yield PrivateRedis(procs, tmp_path)


@pytest.fixture
async def fast_bus(private_redis: PrivateRedis) -> AsyncIterator[RedisBus]:
    await private_redis.start()
    bus = RedisBus(private_redis.url, prefix="restart:", reconnect_base=0.02, reconnect_cap=0.2)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


async def test_bus_reconnects_after_redis_restart_and_marks_lag(
    fast_bus: RedisBus, private_redis: PrivateRedis
) -> None:
    bus = fast_bus
    assert bus.connected
    async with bus.subscribe("jobs") as sub:
        await bus.publish("jobs", {"n": "before"})
        assert [m.data for m in await collect(sub, 1)] == [{"n": "before"}]
        assert not sub.lagged

        private_redis.kill()
        await wait_until(lambda: not bus.connected, what="the bus to notice Redis is gone")
        assert sub.lagged, "a dropped connection must mark subscriptions lagged"
        sub.clear_lag()
        assert await bus.publish("jobs", {"n": "while down"}) is False
        assert await bus.ping() is False

        # A subscription made while Redis is away is activated on reconnect.
        async with bus.subscribe("late") as late:
            await private_redis.start()  # same port
            await wait_until(
                lambda: bus.connected and sub.lagged and late.lagged,
                timeout=10,
                what="reconnect and resubscribe",
                context=lambda: (bus.connected, sub.lagged, late.lagged),
            )
            assert bus.reconnects == 1
            assert await bus.ping() is True
            assert await bus.publish("jobs", {"n": "after"}) is True
            assert await bus.publish("late", {"n": "late"}) is True
            assert [m.data for m in await collect(sub, 1)] == [{"n": "after"}]
            assert [m.data for m in await collect(late, 1)] == [{"n": "late"}]
            assert sub.pending() == 0  # the message published while down is gone


async def test_bus_survives_two_restarts_in_a_row(
    fast_bus: RedisBus, private_redis: PrivateRedis
) -> None:
    bus = fast_bus
    async with bus.subscribe("jobs") as sub:
        for round_ in range(2):
            private_redis.kill()
            await wait_until(lambda: not bus.connected, what="disconnect")
            sub.clear_lag()
            await private_redis.start()
            await wait_until(lambda: bus.connected and sub.lagged, timeout=10, what="reconnect")
            sub.clear_lag()
            await bus.publish("jobs", {"round": round_})
            assert [m.data for m in await collect(sub, 1)] == [{"round": round_}]
        assert bus.reconnects == 2


@pytest.fixture
def shared_redis_prefix() -> Iterator[str]:
    services.need("redis")
    prefix = services.unique_name("ymera_test_replicas") + ":"
    yield prefix
    services.flush_redis_prefix(prefix)


async def test_two_replicas_on_one_prefix_see_each_other(shared_redis_prefix: str) -> None:
    replica_a = RedisBus(services.REDIS_URL, prefix=shared_redis_prefix)
    replica_b = RedisBus(services.REDIS_URL, prefix=shared_redis_prefix)
    other = RedisBus(services.REDIS_URL, prefix=shared_redis_prefix + "other:")
    for bus in (replica_a, replica_b, other):
        await bus.start()
    try:
        async with (
            replica_a.subscribe("events") as on_a,
            replica_b.subscribe("events") as on_b,
            other.subscribe("events") as on_other,
        ):
            await replica_a.publish("events", {"from": "a"})
            await replica_b.publish("events", {"from": "b"})
            assert [m.data for m in await collect(on_a, 2)] == [{"from": "a"}, {"from": "b"}]
            assert [m.data for m in await collect(on_b, 2)] == [{"from": "a"}, {"from": "b"}]
            # Another prefix is another deployment: it sees only its own messages.
            await other.publish("events", {"from": "other"})
            assert [m.data for m in await collect(on_other, 1)] == [{"from": "other"}]
            assert on_a.pending() == 0
            assert on_b.pending() == 0
    finally:
        for bus in (replica_a, replica_b, other):
            await bus.close()

"""Outbox pipeline throughput: state change committed -> sequenced -> delivered.

Measures, in one run, how many events per second go from ``record_event`` in a
committed transaction, through the relay (sequencing under the lock) and the
bus, to a subscriber — on the embedded default (SQLite + in-process bus) and on
the production setup (PostgreSQL + Redis) when those are reachable. The
baseline is the embedded default; other rows print their ratio to it.

    python -m bench events [--events 5000] [--batch 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from ymera.bus import MemoryBus
from ymera.bus.base import EventBus
from ymera.db import migrate
from ymera.db.database import Database
from ymera.events.outbox import record_event
from ymera.events.service import EVENTS_CHANNEL, relay_once

PG_ADMIN = os.environ.get("YMERA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("YMERA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Result:
    name: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def _pipeline(db: Database, bus: EventBus, *, events: int, batch: int) -> float:
    await migrate.upgrade(db)
    stop = asyncio.Event()

    async def relay() -> None:
        while not stop.is_set():
            db.outbox_signal.clear()
            if await relay_once(db, bus) == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(db.outbox_signal.wait(), 0.05)

    async with bus.subscribe(EVENTS_CHANNEL, maxsize=events + 10) as sub:
        relay_task = asyncio.create_task(relay())
        start = time.perf_counter()
        received = 0
        for i in range(0, events, batch):
            async with db.transaction() as session:
                for j in range(i, min(i + batch, events)):
                    record_event(
                        session, type="bench.tick", resource_type="bench", resource_id=str(j)
                    )
        while received < events:
            msg = await sub.get(timeout=30)
            if msg is None:
                raise RuntimeError(f"only {received}/{events} events delivered")
            received += 1
        elapsed = time.perf_counter() - start
        stop.set()
        await relay_task
    return elapsed


async def _sqlite_memory(events: int, batch: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        bus = MemoryBus()
        try:
            secs = await _pipeline(db, bus, events=events, batch=batch)
        finally:
            await db.dispose()
    return Result("sqlite + memory bus (baseline)", events, secs)


async def _postgres_redis(events: int, batch: int) -> Result | None:
    from ymera.bus.redis import RedisBus

    name = f"ymera_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
    except Exception as exc:
        print(f"  (PostgreSQL unavailable, skipped: {exc!r})")
        return None
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    db = Database(url)
    bus = RedisBus(REDIS_URL, prefix=f"{name}:")
    try:
        await bus.start()
        if not await bus.ping():
            print("  (Redis unavailable, skipped)")
            return None
        secs = await _pipeline(db, bus, events=events, batch=batch)
    finally:
        await bus.close()
        await db.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return Result("postgresql + redis bus", events, secs)


async def _run(events: int, batch: int) -> list[Result]:
    results = [await _sqlite_memory(events, batch)]
    pg = await _postgres_redis(events, batch)
    if pg is not None:
        results.append(pg)
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench events")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=50, help="events per transaction")
    args = parser.parse_args(argv)
    results = asyncio.run(_run(args.events, args.batch))
    base = results[0].rate
    print(f"{'setup':34} {'events':>7} {'seconds':>8} {'events/s':>10} {'ratio':>6}")
    for r in results:
        print(f"{r.name:34} {r.events:7d} {r.seconds:8.3f} {r.rate:10.0f} {r.rate / base:6.2f}")
    return 0

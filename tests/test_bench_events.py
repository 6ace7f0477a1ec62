"""`python -m bench events` keeps running against the outbox it measures (it
once called the relay with an argument the relay no longer takes, and
`make bench` failed): its SQLite pipeline, small."""

from __future__ import annotations

from bench import events


async def test_the_event_pipeline_benchmark_delivers_every_event() -> None:
    result = await events._sqlite_memory(events=120, batch=10)
    assert result.events == 120  # _pipeline raises unless every event arrives
    assert result.seconds > 0
    assert result.rate > 0

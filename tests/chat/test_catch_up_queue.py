"""A chat connection's send queue while it catches up after a (re)connect: the
catch-up may fill the queue, and live messages arrive meanwhile; neither makes
the client a slow consumer (close code 4408)."""

from __future__ import annotations

import asyncio

from tests.fixtures.waiting import wait_until
from ymera.chat.hub import CLOSE_SLOW_CONSUMER, ChatConnection


class _Sink:
    """A socket that takes frames only once ``gate`` is open."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: int | None = None
        self.gate = asyncio.Event()

    async def send_text(self, data: str) -> None:
        await self.gate.wait()
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = code


async def test_live_messages_the_catch_up_covers_are_not_held() -> None:
    conn = ChatConnection("s", "p", _Sink(), queue_size=10)
    conn.start()
    conn.covered_seq = 30  # the catch-up sends 1..30
    for seq in range(1, 31):
        conn.offer_message(seq, f"m{seq}")
    assert not conn.closed
    for seq in range(31, 41):  # newer than the catch-up: held, up to the queue's size
        conn.offer_message(seq, f"m{seq}")
    assert not conn.closed
    conn.offer_message(41, "m41")
    assert conn.closed
    assert conn.close_code == CLOSE_SLOW_CONSUMER
    await conn.close()


async def test_going_live_waits_for_room_behind_a_full_catch_up() -> None:
    sink = _Sink()
    conn = ChatConnection("s", "p", sink, queue_size=10)
    conn.start()
    conn.covered_seq = 10
    for seq in range(1, 11):  # the catch-up: the queue is full (the socket takes nothing)
        await conn.send_now(f"m{seq}")
        conn.last_seq = seq
    for seq in range(8, 16):  # live meanwhile: 8..10 came with the catch-up
        conn.offer_message(seq, f"m{seq}")
    live = asyncio.create_task(conn.go_live())
    await asyncio.sleep(0.01)
    assert not live.done()
    assert not conn.ready
    sink.gate.set()
    await asyncio.wait_for(live, 5)
    assert conn.ready
    assert not conn.closed
    conn.offer_message(16, "m16")
    await wait_until(lambda: len(sink.sent) >= 16, timeout=5, what="every frame sent")
    assert sink.sent == [f"m{seq}" for seq in range(1, 17)]  # in order, once each
    await conn.close()

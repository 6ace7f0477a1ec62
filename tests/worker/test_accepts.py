"""The worker's deferred accepts: a task whose result is ready within
ACCEPT_DELAY reports the result alone; one still running then sends a single
accept first. One timer serves every pending accept, not one per task."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fixtures.waiting import wait_until
from ymera.worker import TaskContext, Worker
from ymera.worker.worker import ACCEPT_DELAY


def _assign(task_id: str, task_type: str) -> dict[str, Any]:
    return {
        "type": "assign",
        "task_id": task_id,
        "attempt": 1,
        "lease_token": f"lease-{task_id}",
        "task_type": task_type,
        "input": {},
    }


def _drained(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def _worker(release: asyncio.Event) -> tuple[Worker, asyncio.Queue[dict[str, Any]]]:
    """A worker (never connected) with a "quick" handler and a "slow" one that
    waits for ``release``, and the queue its frames go to."""
    worker = Worker("http://127.0.0.1:9", "ymk_test", concurrency=500)

    @worker.handler("quick")
    async def quick(ctx: TaskContext) -> dict[str, Any]:
        return {"n": ctx.task_id}

    @worker.handler("slow")
    async def slow(ctx: TaskContext) -> dict[str, Any]:
        await release.wait()
        return {}

    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    worker._outbox = outbox
    return worker, outbox


async def test_quick_tasks_report_results_alone_and_slow_ones_accept_once() -> None:
    release = asyncio.Event()
    worker, outbox = _worker(release)
    frames = [_assign(f"q{i}", "quick") for i in range(200)]
    frames += [_assign(f"s{i}", "slow") for i in range(3)]
    worker._on_frame({"type": "batch", "frames": frames})
    # 203 tasks started at once: a single timer is armed for their accepts.
    assert worker._accept_timer is not None
    assert len(worker._accepts) == 203

    sent: list[dict[str, Any]] = []

    def accepts() -> list[dict[str, Any]]:
        sent.extend(_drained(outbox))
        return [f for f in sent if f["type"] == "accept"]

    await wait_until(lambda: len(accepts()) == 3, timeout=5, what="the slow tasks' accepts")
    assert sorted(f["task_id"] for f in accepts()) == ["s0", "s1", "s2"]
    results = [f for f in sent if f["type"] == "result"]
    assert sorted(f["task_id"] for f in results) == sorted(f"q{i}" for i in range(200))
    assert results[0]["output"] == {"n": results[0]["task_id"]}
    assert worker._accepts == {}
    assert worker._accept_timer is None

    release.set()

    def slow_results() -> int:
        sent.extend(_drained(outbox))
        return sum(f["type"] == "result" and f["task_id"].startswith("s") for f in sent)

    await wait_until(lambda: slow_results() == 3, timeout=5, what="the slow tasks' results")
    by_task: dict[str, list[str]] = {}
    for frame in sent:
        by_task.setdefault(frame["task_id"], []).append(frame["type"])
    assert {k: v for k, v in by_task.items() if k.startswith("s")} == {
        f"s{i}": ["accept", "result"] for i in range(3)
    }
    assert all(v == ["result"] for k, v in by_task.items() if k.startswith("q"))


async def test_accepts_started_later_wait_their_own_delay() -> None:
    gate = asyncio.Event()
    worker, outbox = _worker(gate)
    loop = asyncio.get_running_loop()
    worker._on_frame(_assign("a", "slow"))
    first = loop.time()
    await wait_until(lambda: not outbox.empty(), timeout=5, what="a's accept")
    assert outbox.get_nowait()["task_id"] == "a"
    assert loop.time() - first >= ACCEPT_DELAY * 0.9
    worker._on_frame(_assign("b", "slow"))
    second = loop.time()
    assert outbox.empty()  # b's accept is not sent with a's timer
    await wait_until(lambda: not outbox.empty(), timeout=5, what="b's accept")
    assert outbox.get_nowait()["task_id"] == "b"
    assert loop.time() - second >= ACCEPT_DELAY * 0.9
    gate.set()
    await wait_until(lambda: not worker._running, timeout=5, what="both tasks done")

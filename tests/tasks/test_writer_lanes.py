"""Several group-commit lanes (PostgreSQL): claims running side by side never
fill the same free slot twice, and every task still runs exactly once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from tests.agents.test_worker_protocol import agent_and_key, hello, ws_url
from tests.fixtures.backends import Backend
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role
from ymera.config import Settings

CONCURRENCY = 3
TASKS = 60


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings(tasks={"writer_lanes": 3, "writer_spill": 1, "claim_batch": 2})


async def test_lanes_never_overfill_a_worker(live: LiveServer, backend: Backend) -> None:
    writer = live.harness.state.extras["writer"]
    if backend.db_kind == "sqlite":
        assert writer.lanes == 1  # one writer at a time: lanes make no sense
        return
    assert writer.lanes == 3
    _, key = await agent_and_key(live, "laned", max_concurrency=CONCURRENCY)
    h = live.harness
    dev = await h.headers(Role.DEVELOPER)
    held: dict[str, dict[str, Any]] = {}  # assigned, result not sent yet
    most = 0
    done: set[str] = set()

    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=CONCURRENCY, task_types=["t"])

        async def submit(i: int) -> Any:
            resp = await h.client.post(
                "/api/v1/tasks", json={"type": "t", "input": {"i": i}}, headers=dev
            )
            assert resp.status_code == 201, resp.text
            return resp.json()["id"]

        submitting = asyncio.gather(*(submit(i) for i in range(TASKS)))
        while len(done) < TASKS:
            # Hold what arrives until nothing more comes (the server has filled
            # every slot it sees free), check, then finish it all.
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.3 if held else 30))
            except TimeoutError:
                assert len(held) <= CONCURRENCY, f"{len(held)} tasks held at once"
                most = max(most, len(held))
                for ids in held.values():
                    await ws.send(json.dumps({"type": "result", **ids, "output": {}}))
                    done.add(ids["task_id"])
                held.clear()
                continue
            for f in frame["frames"] if frame["type"] == "batch" else [frame]:
                if f["type"] == "assign":
                    held[f["task_id"]] = {k: f[k] for k in ("task_id", "attempt", "lease_token")}
            assert len(held) <= CONCURRENCY, f"{len(held)} tasks held at once"
        ids = set(await submitting)
    assert done == ids
    assert most == CONCURRENCY  # the worker was kept full


async def test_claims_side_by_side_each_see_the_slots_their_own_reports_free(
    live: LiveServer, backend: Backend
) -> None:
    """Two claims at once (two lanes), each in a commit that frees two of a full
    worker's four slots: each may refill its own two. The slots one claim's
    reports free are free to it alone (the other still counts their tasks as
    held), so they are not in the slots it takes from everyone: counted there
    too, the other claim saw them taken twice and left its own two empty."""
    if backend.db_kind == "sqlite":
        pytest.skip("one writer at a time on SQLite: claims never run side by side")
    agent, key = await agent_and_key(live, "sides", max_concurrency=4)
    state = live.harness.state
    dispatcher = state.extras["dispatcher"]
    async with websockets.connect(ws_url(live)) as ws:
        await hello(ws, key, concurrency=4, task_types=["t"])
        conn = state.extras["hub"].get(agent["id"])
        conn.held.update({"t1", "t2", "t3", "t4"})  # full: four tasks running
        conns = {agent["id"]: conn}
        freed = {agent["id"]: 2}
        async with state.db.transaction() as first, state.db.transaction() as second:
            slots_a, taken_a = await dispatcher._slots(first, conns, freed)
            slots_b, taken_b = await dispatcher._slots(second, conns, freed)
            assert [s.free for s in slots_a] == [2]
            assert [s.free for s in slots_b] == [2]
            assert conn.claiming == 0  # nothing taken from the slots others see free
            dispatcher._keep(taken_a, [])
            dispatcher._keep(taken_b, [])
        assert conn.claiming == 0
        # A free slot beside them is shared: the first claim takes it from the second.
        conn.held.discard("t4")
        async with state.db.transaction() as first, state.db.transaction() as second:
            slots_a, taken_a = await dispatcher._slots(first, conns, freed)
            slots_b, taken_b = await dispatcher._slots(second, conns, freed)
            assert [s.free for s in slots_a] == [3]
            assert [s.free for s in slots_b] == [2]
            assert conn.claiming == 1
            dispatcher._keep(taken_a, [])
            dispatcher._keep(taken_b, [])
        assert conn.claiming == 0


async def test_writes_spill_to_another_lane_only_when_the_first_is_backed_up() -> None:
    """The lane rule: the first lane until it has ``spill`` writes queued, then the
    shortest queue; a task's writes follow its first pending one. A batch
    submit counts as the tasks it writes."""
    from ymera.tasks.writer import TaskWriter, _Item

    writer = TaskWriter(state=None, lanes=3, spill=3)  # type: ignore[arg-type]

    async def op(session: Any) -> None:  # never run: lanes are only chosen here
        return None

    def queue(task_id: str | None) -> _Item:
        item = _Item(op, "agent", task_id, False)
        writer._enqueue(item)
        return item

    first = [queue(f"t{i}") for i in range(3)]
    assert [len(q) for q in writer.queues] == [3, 0, 0]
    queue("t3")  # the first lane is backed up: the shortest takes it
    queue(None)
    assert [len(q) for q in writer.queues] == [3, 1, 1]
    queue("t0")  # t0 still has a write pending in the first lane: it goes there
    assert [len(q) for q in writer.queues] == [4, 1, 1]
    # Once a task's writes are committed it is free to go anywhere.
    first[1].future.set_result(None)
    await asyncio.sleep(0)  # done callbacks run on the loop
    assert "t1" not in writer._task_lanes
    assert writer._task_lanes["t0"] == (0, 2)
    first[0].future.set_result(None)
    await asyncio.sleep(0)
    assert writer._task_lanes["t0"] == (0, 1)
    # A submission of 500 tasks weighs 500: the next writes go elsewhere.
    writer._enqueue(_Item(op, None, None, True, weight=500))
    assert writer.queued == [4, 501, 1]
    queue(None)
    queue(None)
    assert writer.queued == [4, 501, 3]


async def test_a_commit_takes_reports_first_then_new_work_up_to_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What one group commit takes from a lane's queue: the agents' reports
    first (they free the slots the commit refills), then submissions, up to
    MAX_BATCH tasks (a batch submit weighs its size), and at least one
    submission whatever the reports weigh (new work never waits for ever)."""
    from ymera.tasks import writer as writer_module
    from ymera.tasks.writer import TaskWriter, _Item

    writer = TaskWriter(state=None)  # type: ignore[arg-type]
    batches: list[list[str]] = []

    async def record(batch: list[_Item], *, claim: bool = True) -> None:
        # What a commit would apply, by name (the ops here only name themselves).
        batches.append([await item.op(None) for item in batch])  # type: ignore[arg-type]
        for item in batch:
            item.future.set_result(None)

    monkeypatch.setattr(writer, "_apply", record)

    def named(name: str) -> Any:
        async def op(session: Any) -> str:
            return name

        return op

    def submit(name: str, size: int) -> Any:
        return writer.submit(named(name), creates_work=True, weight=size)

    def report(name: str) -> Any:
        return writer.submit(named(name), agent_id="a", task_id=name, frees_slot=True)

    # Six submissions of 500 tasks queued before three reports.
    futures = [submit(f"s{i}", 500) for i in range(6)] + [report(f"r{i}") for i in range(3)]
    await asyncio.gather(*futures)
    assert batches == [["r0", "r1", "r2", "s0", "s1", "s2"], ["s3", "s4", "s5"]]
    assert writer.queued == [0]

    # Reports filling a commit still leave room for one submission.
    batches.clear()
    monkeypatch.setattr(writer_module, "MAX_BATCH", 4)
    futures = [submit("big", 500)] + [report(f"r{i}") for i in range(5)]
    await asyncio.gather(*futures)
    assert batches == [["r0", "r1", "r2", "r3", "big"], ["r4"]]
    assert writer.queued == [0]

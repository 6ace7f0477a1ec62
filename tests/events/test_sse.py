"""GET /api/v1/events: the SSE stream (live, resume, filters, recovery) and JSON pages."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer
from tests.fixtures.sse import SSEEvent, SSEReader
from tests.fixtures.waiting import wait_until
from ymera.auth.permissions import Role
from ymera.events.outbox import record_event
from ymera.events.service import EVENTS_CHANNEL
from ymera.models.events import Event

SSE = {"Accept": "text/event-stream"}
JSON = {"Accept": "application/json"}


@dataclass(frozen=True)
class Spec:
    type: str
    resource_type: str = "widget"
    resource_id: str = "w1"


async def record(harness: AppHarness, *specs: Spec, separately: bool = True) -> None:
    """Record events, one transaction each (or all in one), and wait until the relay
    has sequenced them."""
    groups: Iterable[tuple[Spec, ...]] = [(s,) for s in specs] if separately else [specs]
    for group in groups:
        async with harness.state.db.transaction() as session:
            for spec in group:
                record_event(
                    session,
                    type=spec.type,
                    resource_type=spec.resource_type,
                    resource_id=spec.resource_id,
                    data={"spec": [spec.type, spec.resource_type, spec.resource_id]},
                )
    await settled(harness)


async def settled(harness: AppHarness) -> None:
    """Wait until the relay has given every committed event its seq."""

    async def unsequenced() -> int:
        async with harness.state.db.transaction(readonly=True) as session:
            stmt = select(func.count()).select_from(Event).where(Event.seq.is_(None))
            return int((await session.execute(stmt)).scalar_one())

    async def none_left() -> bool:
        return await unsequenced() == 0

    await wait_until(none_left, timeout=10, what="the relay to sequence every event")


async def json_pages(
    harness: AppHarness, headers: dict[str, str], *, limit: int = 1000, **params: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every event through the JSON pages; returns (items, the raw pages)."""
    items: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    after: int | None = params.pop("after", 0)
    while after is not None:
        resp = await harness.client.get(
            "/api/v1/events",
            params={**params, "after": after, "limit": limit},
            headers={**headers, **JSON},
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("application/json")
        page = resp.json()
        pages.append(page)
        items.extend(page["items"])
        after = page["next_after"]
        assert len(pages) < 1000, "pagination does not end"
    return items, pages


@contextlib.asynccontextmanager
async def open_stream(
    live: LiveServer,
    headers: dict[str, str],
    *,
    last_event_id: int | None = None,
    params: dict[str, Any] | None = None,
) -> AsyncIterator[SSEReader]:
    request_headers = {**headers, **SSE}
    if last_event_id is not None:
        request_headers["Last-Event-ID"] = str(last_event_id)
    async with (
        live.client.stream(
            "GET", "/api/v1/events", headers=request_headers, params=params or {}
        ) as response,
        SSEReader(response) as reader,
    ):
        await reader.wait_live()
        yield reader


def seqs(events: Iterable[SSEEvent]) -> list[int]:
    return [e.seq for e in events]


def assert_well_formed(events: Iterable[SSEEvent]) -> None:
    for e in events:
        payload = e.json()
        assert payload["seq"] == e.seq
        assert payload["type"] == e.event


async def test_stream_delivers_live_events(live: LiveServer) -> None:
    harness = live.harness
    headers = await harness.headers(Role.ADMIN)
    await settled(harness)
    async with open_stream(live, headers) as reader:
        assert reader.parser.retry == 2000
        assert reader.events == []  # no replay without a cursor
        created = []
        for name in ("ann", "ben", "cid"):
            resp = await live.client.post(
                "/api/v1/users",
                json={"username": name, "password": "password-123456", "role": "viewer"},
                headers=headers,
            )
            assert resp.status_code == 201, resp.text
            created.append(resp.json()["id"])
        events = await reader.wait_for_count(3)
    assert [e.event for e in events] == ["user.created"] * 3
    assert [e.json()["resource_id"] for e in events] == created
    assert [e.json()["data"]["username"] for e in events] == ["ann", "ben", "cid"]
    first = events[0].seq
    assert seqs(events) == [first, first + 1, first + 2]
    assert_well_formed(events)


async def test_resume_after_last_event_id_has_no_gap_and_no_duplicate(live: LiveServer) -> None:
    harness = live.harness
    headers = await harness.headers(Role.ADMIN)
    await record(harness, *(Spec(f"thing.n{i}", "thing", str(i)) for i in range(6)))
    before, _ = await json_pages(harness, headers)
    resume_at = before[2]["seq"]

    async with open_stream(live, headers, last_event_id=resume_at) as reader:
        replayed = await reader.wait_for_seq(before[-1]["seq"])
        assert [e.json() for e in replayed] == [p for p in before if p["seq"] > resume_at]
        # Then live events follow on the same stream.
        await record(harness, Spec("thing.late1"), Spec("thing.late2"), separately=False)
        await record(harness, Spec("thing.late3"))
        everything, _ = await json_pages(harness, headers)
        events = await reader.wait_for_seq(everything[-1]["seq"])
    assert seqs(events) == list(range(resume_at + 1, everything[-1]["seq"] + 1))
    assert [e.json() for e in events] == [p for p in everything if p["seq"] > resume_at]
    assert [e.event for e in events][-3:] == ["thing.late1", "thing.late2", "thing.late3"]
    assert_well_formed(events)

    # `after` is the same cursor as Last-Event-ID.
    async with open_stream(live, headers, params={"after": resume_at}) as reader:
        again = await reader.wait_for_seq(everything[-1]["seq"])
    assert seqs(again) == seqs(events)


FILTERS: list[dict[str, Any]] = [
    {"type": "alpha.one"},
    {"type": "alpha.*"},
    {"type": ["beta.*", "alpha.one"]},
    {"resource_type": "widget"},
    {"resource_id": "w1"},
    {"type": "alpha.*", "resource_type": "widget", "resource_id": "w1"},
]
EVENTS = [
    Spec("alpha.one", "widget", "w1"),
    Spec("alpha.two", "widget", "w2"),
    Spec("beta.one", "widget", "w1"),
    Spec("alpha.one", "gadget", "g1"),
    Spec("beta.two", "gadget", "w1"),
    Spec("alphabet.soup", "widget", "w1"),  # "alpha.*" is the prefix "alpha." only
    Spec("gamma", "widget", "w2"),
]
SENTINEL = Spec("alpha.one", "widget", "w1")  # matches every filter above


def reference_match(spec: list[str], flt: dict[str, Any]) -> bool:
    etype, rtype, rid = spec
    types = flt.get("type", [])
    types = [types] if isinstance(types, str) else types
    if types and not any(
        etype.startswith(t[:-1]) if t.endswith("*") else etype == t for t in types
    ):
        return False
    if "resource_type" in flt and rtype != flt["resource_type"]:
        return False
    return not ("resource_id" in flt and rid != flt["resource_id"])


async def test_filters_on_live_and_replayed_streams(live: LiveServer) -> None:
    harness = live.harness
    headers = await harness.headers(Role.ADMIN)
    await settled(harness)
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(open_stream(live, headers, params=f)) for f in FILTERS
        ]
        await record(harness, *EVENTS)
        await record(harness, SENTINEL)
        everything, _ = await json_pages(harness, headers)
        sentinel_seq = everything[-1]["seq"]
        live_results = [await s.wait_for_seq(sentinel_seq) for s in streams]
    ours = [p for p in everything if "spec" in p["data"]]
    for flt, got in zip(FILTERS, live_results, strict=True):
        expected = [p["seq"] for p in ours if reference_match(p["data"]["spec"], flt)]
        assert seqs(got) == expected, f"live stream with {flt}"
        assert_well_formed(got)

    # The same filters applied by the database when replaying from the start.
    for flt in FILTERS:
        async with open_stream(live, headers, last_event_id=0, params=flt) as reader:
            got = await reader.wait_for_seq(sentinel_seq)
        expected = [p["seq"] for p in ours if reference_match(p["data"]["spec"], flt)]
        assert seqs(got) == expected, f"replayed stream with {flt}"
        page, _ = await json_pages(harness, headers, **flt)
        assert [p["seq"] for p in page] == expected, f"JSON page with {flt}"


async def test_json_pages_follow_next_after(live: LiveServer) -> None:
    harness = live.harness
    headers = await harness.headers(Role.ADMIN)
    await record(harness, *(Spec(f"page.n{i}", "page", str(i)) for i in range(7)))
    everything, _ = await json_pages(harness, headers)
    total = len(everything)
    assert total >= 7
    assert [p["seq"] for p in everything] == list(range(1, total + 1))

    items, pages = await json_pages(harness, headers, limit=3)
    assert items == everything
    for page in pages[:-1]:
        assert len(page["items"]) == 3
        assert page["next_after"] == page["items"][-1]["seq"]
    assert pages[-1]["next_after"] is None
    assert len(pages) == total // 3 + 1

    # A page starts strictly after `after`; filters apply; LIKE wildcards are literal.
    resp = await harness.client.get(
        "/api/v1/events",
        params={"after": everything[-3]["seq"], "limit": 10},
        headers={**headers, **JSON},
    )
    assert [p["seq"] for p in resp.json()["items"]] == [p["seq"] for p in everything[-2:]]
    assert resp.json()["next_after"] is None
    page_events, _ = await json_pages(harness, headers, type="page.*", limit=2)
    assert [p["type"] for p in page_events] == [f"page.n{i}" for i in range(7)]
    wildcard, _ = await json_pages(harness, headers, type="pag_.*")
    assert wildcard == []


BAD_CURSORS: list[tuple[dict[str, str], dict[str, str]]] = [
    ({"Last-Event-ID": "abc", **SSE}, {}),
    ({"Last-Event-ID": "-3", **SSE}, {}),
    ({"Last-Event-ID": "1.5", **JSON}, {}),
    (SSE, {"after": "nope"}),
    (JSON, {"after": "-1"}),
]


async def test_bad_cursor_is_a_422_problem(harness: AppHarness) -> None:
    """Cursors are declared as digits in the schema, so a bad one fails validation."""
    auth = await harness.headers(Role.ADMIN)
    for headers, params in BAD_CURSORS:
        resp = await harness.client.get(
            "/api/v1/events", headers={**auth, **headers}, params=params
        )
        assert resp.status_code == 422, (headers, params, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        body = resp.json()
        assert body["status"] == 422
        assert body["code"] == "validation_error"
        assert "Last-Event-ID" in body["detail"] or "after" in body["detail"]


class LossyBus:
    """Drops the bus message of every event whose type starts with ``lost.``."""

    def __init__(self, harness: AppHarness, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bus = harness.state.bus
        self.dropped: list[int] = []
        original = self.bus.publish

        async def publish(channel: str, data: dict[str, Any]) -> bool:
            if channel == EVENTS_CHANNEL and str(data.get("type", "")).startswith("lost."):
                self.dropped.append(int(data["seq"]))
                return True
            return bool(await original(channel, data))

        async def publish_many(channel: str, items: list[dict[str, Any]]) -> bool:
            for data in items:
                if not await publish(channel, data):
                    return False
            return True

        monkeypatch.setattr(self.bus, "publish", publish)
        monkeypatch.setattr(self.bus, "publish_many", publish_many)


async def test_stream_recovers_lost_bus_messages_from_the_database(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = live.harness
    headers = await harness.headers(Role.ADMIN)
    await settled(harness)
    lossy = LossyBus(harness, monkeypatch)
    harness.state.settings.events.sse_keepalive_seconds = 60.0  # no periodic check here
    async with open_stream(live, headers) as reader:
        # A lost message in the middle: the next one reveals the gap.
        await record(harness, Spec("kept.one"), Spec("lost.two"), Spec("kept.three"))
        everything, _ = await json_pages(harness, headers)
        events = await reader.wait_for_seq(everything[-1]["seq"])
        assert [e.event for e in events] == ["kept.one", "lost.two", "kept.three"]
        assert lossy.dropped == [events[1].seq]

        # A lost last message: nothing reveals the gap, but a lagged subscription
        # (as after a reconnect) makes the stream catch up at once.
        await record(harness, Spec("lost.four"))
        assert len(lossy.dropped) == 2
        harness.state.bus._mark_all_lagged()
        events = await reader.wait_for_seq(lossy.dropped[-1], timeout=5)
    assert [e.event for e in events] == ["kept.one", "lost.two", "kept.three", "lost.four"]
    first = events[0].seq
    assert seqs(events) == list(range(first, first + 4))


async def test_idle_stream_checks_the_database_at_each_keepalive(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = live.harness
    headers = await harness.headers(Role.ADMIN)
    await settled(harness)
    lossy = LossyBus(harness, monkeypatch)
    harness.state.settings.events.sse_keepalive_seconds = 0.2
    async with open_stream(live, headers) as reader:
        await reader.wait(lambda: "keepalive" in reader.comments, what="a keepalive comment")
        await record(harness, Spec("lost.only"))
        assert len(lossy.dropped) == 1
        events = await reader.wait_for_seq(lossy.dropped[0], timeout=5)
    assert [(e.seq, e.event) for e in events] == [(lossy.dropped[0], "lost.only")]


async def test_closing_the_stream_releases_its_subscription(live: LiveServer) -> None:
    harness = live.harness
    headers = await harness.headers(Role.ADMIN)
    bus = harness.state.bus
    baseline = bus.subscriber_count(EVENTS_CHANNEL)
    async with open_stream(live, headers), open_stream(live, headers):
        assert bus.subscriber_count(EVENTS_CHANNEL) == baseline + 2
    await wait_until(
        lambda: bus.subscriber_count(EVENTS_CHANNEL) == baseline,
        what="the server to drop the closed streams' subscriptions",
        context=lambda: bus.subscriber_count(EVENTS_CHANNEL),
    )

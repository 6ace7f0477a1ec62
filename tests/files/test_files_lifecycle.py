"""The Files API's lifecycle rules: temporary files swept once expired, per-owner quotas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select

from tests.code.api_helpers import cheap_passwords, problem  # noqa: F401  (fixture)
from tests.conftest import AppHarness
from tests.files.test_files_api import API, another_app, blobs, upload
from ymera.app import create_app
from ymera.auth.permissions import Role
from ymera.config import Settings
from ymera.kit.clock import FrozenClock
from ymera.models.events import Event
from ymera.models.files import File
from ymera.runtime.file_loops import sweep_once
from ymera.runtime.loops import DEFAULT_LOOPS


@pytest.fixture
async def frozen(settings: Settings) -> AsyncIterator[AppHarness]:
    """The app on a frozen clock, without the sweeper loop (tests run passes themselves)."""
    app = create_app(settings, clock=FrozenClock(datetime.now(UTC)), loops=DEFAULT_LOOPS)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ymera.test") as client:
            yield AppHarness(app, client, settings)


async def _rows(h: AppHarness) -> dict[str, File]:
    async with h.state.db.transaction(readonly=True) as session:
        files = (await session.execute(select(File))).scalars().all()
    return {f.id: f for f in files}


async def _events(h: AppHarness, type_: str) -> list[Event]:
    async with h.state.db.transaction(readonly=True) as session:
        stmt = select(Event).where(Event.type == type_)
        return list((await session.execute(stmt)).scalars().all())


async def test_sweep_deletes_expired_files_and_keeps_the_rest(frozen: AppHarness) -> None:
    h = frozen
    temporary = await upload(h, b"short-lived", name="tmp.txt", ttl_seconds=60)
    later = await upload(h, b"longer", name="later.txt", ttl_seconds=3600)
    permanent = await upload(h, b"forever", name="keep.txt")
    assert len(blobs(h)) == 3
    key = (await _rows(h))[temporary["id"]].storage_key

    assert await sweep_once(h.state) == 0  # nothing expired yet
    clock: FrozenClock = h.state.clock
    clock.advance(61)
    assert await sweep_once(h.state) == 1
    assert await sweep_once(h.state) == 0  # idempotent

    rows = await _rows(h)
    assert set(rows) == {later["id"], permanent["id"]}
    assert len(blobs(h)) == 2
    assert not await h.state.extras["files"].exists(key)
    events = await _events(h, "file.expired")
    assert [e.resource_id for e in events] == [temporary["id"]]
    got = await h.client.get(f"{API}/{permanent['id']}", headers=await h.headers(Role.DEVELOPER))
    assert got.status_code == 200


async def test_sweep_tolerates_a_missing_blob_and_works_in_batches(frozen: AppHarness) -> None:
    h = frozen
    metas = [await upload(h, b"x", name=f"f{i}", ttl_seconds=10) for i in range(5)]
    storage = h.state.extras["files"]
    await storage.delete((await _rows(h))[metas[0]["id"]].storage_key)  # already gone
    h.state.clock.advance(11)
    assert await sweep_once(h.state, batch=2) == 5
    assert await _rows(h) == {}
    assert blobs(h) == []
    assert len(await _events(h, "file.expired")) == 5


async def test_byte_quota(harness: AppHarness) -> None:
    headers = await harness.headers(Role.DEVELOPER)
    async with another_app(harness, quota_bytes=1000) as client:
        ok = await client.post(API, params={"name": "a"}, content=b"a" * 600, headers=headers)
        assert ok.status_code == 201, ok.text

        # Declared: refused before reading.
        resp = await client.post(API, params={"name": "b"}, content=b"b" * 401, headers=headers)
        body = problem(resp, 413, "quota_exceeded")
        assert body["quota_bytes"] == 1000
        assert body["used_bytes"] == 600
        assert "1000" in body["detail"]
        assert "600" in body["detail"]

        # Not declared (chunked): refused while reading.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"c" * 100

        resp = await client.post(API, params={"name": "c"}, content=chunks(), headers=headers)
        problem(resp, 413, "quota_exceeded")

        # Another owner has a quota of its own; exactly the quota is fine.
        admin = await harness.headers(Role.ADMIN)
        other = await client.post(API, params={"name": "d"}, content=b"d" * 1000, headers=admin)
        assert other.status_code == 201, other.text
        fits = await client.post(API, params={"name": "e"}, content=b"e" * 400, headers=headers)
        assert fits.status_code == 201, fits.text
    assert len(blobs(harness)) == 3  # nothing kept from the refused uploads
    listed = await harness.client.get(API, headers=headers)
    assert sorted(f["name"] for f in listed.json()["items"]) == ["a", "e"]


async def test_quota_is_checked_again_on_the_stored_size(harness: AppHarness) -> None:
    """A lying (short) Content-Length passes the first check; the real size does not."""
    from ymera.files import service
    from ymera.files.errors import QuotaExceeded
    from ymera.files.service import Quota

    await upload(harness, b"a" * 600)
    rows = await _rows(harness)
    owner = next(iter(rows.values())).owner_id

    class _P:
        kind = "user"
        agent_id = None
        user_id = owner.removeprefix("user:")
        id = owner

    async def body() -> AsyncIterator[bytes]:
        yield b"z" * 500

    storage = service.storage_of(harness.state)
    with pytest.raises(QuotaExceeded):
        async with harness.state.db.transaction() as session:
            await service.upload(
                session,
                storage=storage,
                principal=_P(),  # type: ignore[arg-type]
                name="lie",
                body=body(),
                declared_size=10,
                limit=10_000,
                quota=Quota(max_bytes=1000, max_files=100),
                ttl_seconds=None,
                tags=[],
                now=datetime.now(UTC),
            )
    assert len(blobs(harness)) == 1
    assert len(await _rows(harness)) == 1


async def test_file_count_quota_and_expired_files_do_not_count(frozen: AppHarness) -> None:
    h = frozen
    headers = await h.headers(Role.DEVELOPER)
    await upload(h, b"1", ttl_seconds=30)
    await upload(h, b"2")
    settings = h.settings.model_copy(
        update={"files": h.settings.files.model_copy(update={"quota_files": 2})}
    )
    app = create_app(settings, clock=h.state.clock, loops=DEFAULT_LOOPS)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as client:
            resp = await client.post(API, params={"name": "3"}, content=b"3", headers=headers)
            body = problem(resp, 429, "too_many_files")
            assert body["quota_files"] == 2
            assert body["used_files"] == 2
            assert "2 files" in body["detail"]

            h.state.clock.advance(31)  # the temporary file no longer counts
            resp = await client.post(API, params={"name": "3"}, content=b"3", headers=headers)
            assert resp.status_code == 201, resp.text
    assert len(blobs(h)) == 3  # nothing kept from the refused upload (the expired one waits)

"""The Files API end to end: upload, metadata, listing, download with ranges, delete."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.code.api_helpers import cheap_passwords, problem  # noqa: F401  (fixture)
from tests.conftest import AppHarness
from ymera.app import create_app
from ymera.auth.permissions import Role

API = "/api/v1/files"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def upload(
    h: AppHarness,
    body: bytes,
    name: str = "data.bin",
    role: Role = Role.DEVELOPER,
    content_type: str = "application/octet-stream",
    **params: Any,
) -> dict[str, Any]:
    headers = {**await h.headers(role), "Content-Type": content_type}
    resp = await h.client.post(API, params={"name": name, **params}, content=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def content(
    h: AppHarness, file_id: str, role: Role = Role.DEVELOPER, **headers: str
) -> httpx.Response:
    return await h.client.get(
        f"{API}/{file_id}/content", headers={**await h.headers(role), **headers}
    )


def blobs(h: AppHarness) -> list[Path]:
    root = Path(h.settings.data_dir) / "files"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@asynccontextmanager
async def another_app(h: AppHarness, **files: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database and data directory with `files` settings changed."""
    settings = h.settings.model_copy(update={"files": h.settings.files.model_copy(update=files)})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as client:
            yield client


async def test_upload_streams_raw_body_and_sniffs_type(harness: AppHarness) -> None:
    meta = await upload(harness, PNG, name="pic.txt", content_type="text/plain", tag=["a", "b"])
    assert meta["size"] == len(PNG)
    assert meta["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert meta["content_type"] == "image/png"  # not the lying header, not the name
    assert meta["name"] == "pic.txt"
    assert meta["owner_id"].startswith("user:")
    assert meta["tags"] == ["a", "b"]
    assert meta["expires_at"] is None
    got = await harness.client.get(f"{API}/{meta['id']}", headers=await harness.headers())
    assert got.status_code == 200
    assert got.json() == meta


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"%PDF-1.7\n...", "application/pdf"),
        (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        (b"GIF89a....", "image/gif"),
        (b"PK\x03\x04zip", "application/zip"),
        (b"\x1f\x8b\x08\x00", "application/gzip"),
        ("héllo wörld\n".encode(), "text/plain; charset=utf-8"),
        (b"text\x00with nul", "application/octet-stream"),
        (b"\xfe\xff\xfa bad utf8", "application/octet-stream"),
        (b"", "text/plain; charset=utf-8"),
    ],
)
async def test_sniffed_types(harness: AppHarness, body: bytes, expected: str) -> None:
    meta = await upload(harness, body, content_type="image/png")
    assert meta["content_type"] == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("a\x01b\x1fc\x7f.txt", "abc.txt"),
        ("dir/", "file"),
        ("..", "file"),
        ("x" * 600, "x" * 255),
    ],
)
async def test_names_are_sanitised(harness: AppHarness, name: str, expected: str) -> None:
    meta = await upload(harness, b"hi", name=name)
    assert meta["name"] == expected


async def test_temporary_file_expires(harness: AppHarness) -> None:
    meta = await upload(harness, b"tmp", ttl_seconds=60)
    assert meta["expires_at"] is not None


async def test_over_the_limit_is_refused_and_nothing_is_kept(harness: AppHarness) -> None:
    headers = await harness.headers(Role.DEVELOPER)
    async with another_app(harness, max_upload_bytes=1000) as client:
        # Declared too large: refused before reading.
        resp = await client.post(API, params={"name": "big"}, content=b"x" * 1001, headers=headers)
        problem(resp, 413, "file_too_large")

        # No length declared (chunked): refused while reading.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"y" * 300

        resp = await client.post(API, params={"name": "big"}, content=chunks(), headers=headers)
        problem(resp, 413, "file_too_large")

        # Exactly the limit is fine.
        ok = await client.post(API, params={"name": "ok"}, content=b"z" * 1000, headers=headers)
        assert ok.status_code == 201, ok.text
    assert len(blobs(harness)) == 1
    listed = await harness.client.get(API, headers=headers)
    assert [f["name"] for f in listed.json()["items"]] == ["ok"]


async def test_download_full(harness: AppHarness) -> None:
    meta = await upload(harness, PNG, name="pic.png")
    resp = await content(harness, meta["id"])
    assert resp.status_code == 200
    assert resp.content == PNG
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["content-length"] == str(len(PNG))
    assert resp.headers["etag"] == f'"{meta["sha256"]}"'
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["content-disposition"] == (
        "attachment; filename=\"pic.png\"; filename*=UTF-8''pic.png"
    )


async def test_content_disposition_with_a_utf8_name(harness: AppHarness) -> None:
    name = 'résumé "final" 東京.txt'
    meta = await upload(harness, b"cv", name=name)
    resp = await content(harness, meta["id"])
    disposition = resp.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="resume _final_ .txt"; ')
    assert disposition.endswith("filename*=UTF-8''" + quote(name, safe=""))
    assert disposition.isascii()


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 10),
        ("bytes=10-", 10, None),
        ("bytes=-7", -7, None),
        ("bytes=5-5", 5, 6),
        ("bytes=1000-999999", 1000, None),  # end clamped to the size
        ("bytes=-99999", 0, None),  # suffix longer than the file: all of it
    ],
)
async def test_single_ranges(harness: AppHarness, header: str, start: int, end: int | None) -> None:
    meta = await upload(harness, PNG)
    resp = await content(harness, meta["id"], Range=header)
    assert resp.status_code == 206, resp.text
    expected = PNG[start:end]
    assert resp.content == expected
    assert resp.headers["content-length"] == str(len(expected))
    first = len(PNG) - len(expected) if start < 0 else start
    last = first + len(expected) - 1
    assert resp.headers["content-range"] == f"bytes {first}-{last}/{len(PNG)}"


@pytest.mark.parametrize("header", ["bytes=5000-", "bytes=-0", "bytes=1032-1040"])
async def test_unsatisfiable_range(harness: AppHarness, header: str) -> None:
    meta = await upload(harness, PNG)
    resp = await content(harness, meta["id"], Range=header)
    problem(resp, 416, "range_not_satisfiable")
    assert resp.headers["content-range"] == f"bytes */{len(PNG)}"


@pytest.mark.parametrize(
    "header", ["bytes=0-1,5-9", "items=0-5", "bytes=abc", "bytes=9-2", "bytes=-", "garbage"]
)
async def test_malformed_or_multiple_ranges_send_everything(
    harness: AppHarness, header: str
) -> None:
    meta = await upload(harness, PNG)
    resp = await content(harness, meta["id"], Range=header)
    assert resp.status_code == 200
    assert resp.content == PNG
    assert "content-range" not in resp.headers


async def test_list_shows_only_own_files_except_to_admins(harness: AppHarness) -> None:
    mine = await upload(harness, b"1", name="mine", role=Role.DEVELOPER)
    theirs = await upload(harness, b"2", name="theirs", role=Role.OPERATOR)
    dev = await harness.client.get(API, headers=await harness.headers(Role.DEVELOPER))
    assert [f["id"] for f in dev.json()["items"]] == [mine["id"]]
    admin = await harness.client.get(API, headers=await harness.headers(Role.ADMIN))
    assert [f["id"] for f in admin.json()["items"]] == [theirs["id"], mine["id"]]
    # Pagination: one a page, newest first.
    headers = await harness.headers(Role.ADMIN)
    first = (await harness.client.get(API, params={"limit": 1}, headers=headers)).json()
    assert [f["id"] for f in first["items"]] == [theirs["id"]]
    params = {"limit": 1, "cursor": first["next_cursor"]}
    second = (await harness.client.get(API, params=params, headers=headers)).json()
    assert [f["id"] for f in second["items"]] == [mine["id"]]
    assert second["next_cursor"] is None


async def test_another_user_gets_404(harness: AppHarness) -> None:
    meta = await upload(harness, b"secret", role=Role.OPERATOR)
    headers = await harness.headers(Role.DEVELOPER)
    for url in (f"{API}/{meta['id']}", f"{API}/{meta['id']}/content"):
        problem(await harness.client.get(url, headers=headers), 404, "file_not_found")
    problem(
        await harness.client.delete(f"{API}/{meta['id']}", headers=headers), 404, "file_not_found"
    )


async def test_delete_removes_row_and_blob(harness: AppHarness) -> None:
    meta = await upload(harness, b"bye")
    assert len(blobs(harness)) == 1
    headers = await harness.headers(Role.DEVELOPER)
    resp = await harness.client.delete(f"{API}/{meta['id']}", headers=headers)
    assert resp.status_code == 204
    assert blobs(harness) == []
    problem(await harness.client.get(f"{API}/{meta['id']}", headers=headers), 404, "file_not_found")
    problem(await content(harness, meta["id"]), 404, "file_not_found")


async def test_operator_sees_but_may_not_delete_others_files(harness: AppHarness) -> None:
    meta = await upload(harness, b"x", role=Role.DEVELOPER)
    headers = await harness.headers(Role.OPERATOR)
    assert (await harness.client.get(f"{API}/{meta['id']}", headers=headers)).status_code == 200
    problem(
        await harness.client.delete(f"{API}/{meta['id']}", headers=headers), 403, "not_file_owner"
    )
    admin = await harness.headers(Role.ADMIN)
    assert (await harness.client.delete(f"{API}/{meta['id']}", headers=admin)).status_code == 204


async def test_viewer_may_read_but_not_upload(harness: AppHarness) -> None:
    resp = await harness.client.post(
        API, params={"name": "n"}, content=b"x", headers=await harness.headers(Role.VIEWER)
    )
    assert resp.status_code == 403

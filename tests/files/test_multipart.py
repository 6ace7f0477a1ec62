"""Multipart uploads: parsed while the body streams in, the size limit applied to
the bytes as they are read (413 before the body has even been sent in full)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import pytest

from tests.code.api_helpers import problem
from tests.conftest import AppHarness
from tests.files.test_files_api import API, PNG, blobs
from tests.fixtures.backends import Backend
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role
from ymera.config import Settings

LIMIT = 256 * 1024


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings(files={"max_upload_bytes": LIMIT})


async def test_multipart_upload_takes_the_file_part(harness: AppHarness) -> None:
    headers = await harness.headers(Role.DEVELOPER)
    resp = await harness.client.post(
        API,
        params={"tag": "form"},
        data={"note": "a field before the file"},
        files={"file": ("../../holiday snap.png", PNG, "text/plain")},
        headers=headers,
    )
    assert resp.status_code == 201, resp.text
    meta = resp.json()
    assert meta["name"] == "holiday snap.png"  # the part's filename, sanitised
    assert meta["content_type"] == "image/png"  # sniffed, not the part's type
    assert meta["size"] == len(PNG)
    assert meta["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert meta["tags"] == ["form"]
    body = await harness.client.get(f"{API}/{meta['id']}/content", headers=headers)
    assert body.content == PNG
    # A name in the query wins over the filename.
    named = await harness.client.post(
        API, params={"name": "chosen.bin"}, files={"file": ("x.bin", b"abc")}, headers=headers
    )
    assert named.json()["name"] == "chosen.bin"


async def test_multipart_refusals(harness: AppHarness) -> None:
    headers = await harness.headers(Role.DEVELOPER)
    client = harness.client
    # No file part.
    resp = await client.post(
        API,
        content=b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--b--\r\n",
        headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
    )
    problem(resp, 400, "invalid_multipart")
    # Raw body without a name.
    problem(await client.post(API, content=b"abc", headers=headers), 422, "name_required")
    # Too large, with or without a declared length: nothing kept.
    big = b"z" * (LIMIT + 1)
    problem(
        await client.post(API, files={"file": ("big.bin", big)}, headers=headers),
        413,
        "file_too_large",
    )

    async def chunked() -> AsyncIterator[bytes]:
        yield b"--b\r\nContent-Disposition: form-data; name=file; filename=f\r\n\r\n"
        for _ in range(LIMIT // 4096 + 2):
            yield b"y" * 4096
        yield b"\r\n--b--\r\n"

    resp = await client.post(
        API,
        content=chunked(),
        headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
    )
    problem(resp, 413, "file_too_large")
    # Padding with other fields does not get around the limit either.
    padded = await client.post(
        API,
        data={f"pad{i}": "p" * 10_000 for i in range(10)},
        files={"file": ("small.bin", b"s")},
        headers=headers,
    )
    problem(padded, 413, "file_too_large")
    exact = await client.post(API, files={"file": ("ok.bin", b"o" * LIMIT)}, headers=headers)
    assert exact.status_code == 201, exact.text
    assert len(blobs(harness)) == 1


@pytest.mark.parametrize("backend", ["sqlite-memory"], indirect=True)
async def test_413_arrives_before_the_body_is_sent_in_full(live: LiveServer) -> None:
    """A real server answers 413 while the (chunked) body is still incomplete: the
    limit acts on the bytes as they stream in, not after Starlette spooled them."""
    token = (await live.harness.headers(Role.DEVELOPER))["Authorization"]
    url = urlparse(live.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = (
        f"POST {API} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {token}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(head.encode())

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    writer.write(chunk(b"--b\r\nContent-Disposition: form-data; name=file; filename=f\r\n\r\n"))
    sent = 0
    piece = b"q" * 65536
    while sent < 2 * LIMIT:  # twice the limit, and never the end of the body
        writer.write(chunk(piece))
        sent += len(piece)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    assert status_line.split()[1] == b"413", status_line
    writer.close()
    assert blobs(live.harness) == []

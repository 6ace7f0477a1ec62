"""Blob storage: one behaviour suite run on local disk and on a real S3 server (moto)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.files.conftest import MOTO_MIN_PART_SIZE, S3Server, s3_client
from ymera.files.storage import (
    BlobNotFound,
    BlobStorage,
    LocalDiskStorage,
    StoredBlob,
    storage_from_url,
)
from ymera.files.storage.base import WRITE_CHUNK
from ymera.files.storage.s3 import DEFAULT_PART_SIZE, S3Storage

PART = MOTO_MIN_PART_SIZE


def body_of(size: int, seed: int = 7) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


async def chunked(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def failing(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    async for chunk in chunked(data, size):
        yield chunk
    raise RuntimeError("client went away")


async def read_all(storage: BlobStorage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in await storage.open(key, start, end)])


@dataclass
class Case:
    storage: BlobStorage
    leftovers: Callable[[], list[str]]
    """Everything the backend holds (files, temp files, objects, open uploads)."""
    multipart_parts: Callable[[str], int] | None = None


def local_case(tmp_path: Path) -> Case:
    root = tmp_path / "files"

    def leftovers() -> list[str]:
        if not root.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    return Case(LocalDiskStorage(root), leftovers)


def s3_case(server: S3Server) -> Case:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    storage = S3Storage(
        bucket=server.bucket,
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key=server.access_key,
        secret_key=server.secret_key,
        prefix=prefix,
        part_size=PART,
    )
    client: Any = s3_client(server)

    def leftovers() -> list[str]:
        objects = client.list_objects_v2(Bucket=server.bucket, Prefix=prefix + "/")
        uploads = client.list_multipart_uploads(Bucket=server.bucket, Prefix=prefix + "/")
        return [o["Key"] for o in objects.get("Contents", [])] + [
            f"upload:{u['Key']}" for u in uploads.get("Uploads", [])
        ]

    def multipart_parts(key: str) -> int:
        etag = client.head_object(Bucket=server.bucket, Key=f"{prefix}/{key}")["ETag"]
        _, _, parts = etag.strip('"').partition("-")
        return int(parts) if parts else 0

    return Case(storage, leftovers, multipart_parts)


@pytest.fixture(params=["local", "s3"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    if request.param == "local":
        return local_case(tmp_path)
    return s3_case(request.getfixturevalue("s3_server"))


async def test_put_and_open_round_trip(case: Case) -> None:
    data = body_of(123_457)
    blob = await case.storage.put("ab/cd/blob-1.bin", chunked(data))
    assert blob == StoredBlob("ab/cd/blob-1.bin", len(data), hashlib.sha256(data).hexdigest())
    assert await read_all(case.storage, "ab/cd/blob-1.bin") == data
    assert await case.storage.exists("ab/cd/blob-1.bin")
    assert await case.storage.size("ab/cd/blob-1.bin") == len(data)


async def test_empty_body(case: Case) -> None:
    blob = await case.storage.put("empty", chunked(b""))
    assert (blob.size, blob.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert await read_all(case.storage, "empty") == b""
    assert await case.storage.size("empty") == 0


async def test_put_replaces_existing_blob(case: Case) -> None:
    await case.storage.put("k", chunked(b"old contents, longer"))
    await case.storage.put("k", chunked(b"new"))
    assert await read_all(case.storage, "k") == b"new"
    assert len(case.leftovers()) == 1


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 10), (5, 17), (1000, None), (0, None), (99_990, 100_000), (42, 42), (99_999, None)],
)
async def test_ranges(case: Case, start: int, end: int | None) -> None:
    data = body_of(100_000)
    await case.storage.put("r", chunked(data))
    assert await read_all(case.storage, "r", start, end) == data[start:end]


@pytest.mark.parametrize(("start", "end"), [(99_000, 200_000), (100_000, None), (150_000, None)])
async def test_ranges_past_the_end_are_clamped(case: Case, start: int, end: int | None) -> None:
    data = body_of(100_000)
    await case.storage.put("r", chunked(data))
    assert await read_all(case.storage, "r", start, end) == data[start:end]


@pytest.mark.parametrize(("start", "end"), [(-1, None), (10, 9)])
async def test_invalid_ranges_are_refused(case: Case, start: int, end: int | None) -> None:
    await case.storage.put("r", chunked(b"0123456789abcdef"))
    with pytest.raises(ValueError, match="range"):
        await case.storage.open("r", start, end)


async def test_missing_blob(case: Case) -> None:
    assert not await case.storage.exists("nope")
    with pytest.raises(BlobNotFound):
        await case.storage.size("nope")
    with pytest.raises(BlobNotFound):
        await case.storage.open("nope")
    with pytest.raises(BlobNotFound):
        await case.storage.open("nope", 3, 3)


async def test_delete_is_idempotent(case: Case) -> None:
    await case.storage.put("d/x", chunked(b"data"))
    await case.storage.delete("d/x")
    assert not await case.storage.exists("d/x")
    await case.storage.delete("d/x")
    await case.storage.delete("never/existed")
    assert case.leftovers() == []


BAD_KEYS = [
    "",
    "/abs",
    "trailing/",
    "a//b",
    "..",
    "a/../b",
    ".",
    "a/./b",
    "sp ace",
    "back\\slash",
    "nul\x00",
    "é",
    "../../etc/passwd",
    "x" * 1025,
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_invalid_keys_are_refused(case: Case, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        await case.storage.put(key, chunked(b"x"))
    for call in (case.storage.open, case.storage.delete, case.storage.exists, case.storage.size):
        with pytest.raises(ValueError, match="invalid storage key"):
            await call(key)
    assert case.leftovers() == []


@pytest.mark.parametrize("size", [PART // 2, 3 * PART + 1, WRITE_CHUNK + 1])
async def test_failing_stream_leaves_nothing(case: Case, size: int) -> None:
    with pytest.raises(RuntimeError, match="client went away"):
        await case.storage.put("f/blob", failing(body_of(size)))
    assert not await case.storage.exists("f/blob")
    assert case.leftovers() == []


async def test_failed_replace_keeps_previous_blob(case: Case) -> None:
    await case.storage.put("keep", chunked(b"previous"))
    with pytest.raises(RuntimeError):
        await case.storage.put("keep", failing(body_of(3 * PART)))
    assert await read_all(case.storage, "keep") == b"previous"
    assert len(case.leftovers()) == 1


async def test_cancelled_upload_leaves_nothing(case: Case) -> None:
    sent = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        async for chunk in chunked(body_of(2 * PART + 5)):
            yield chunk
        sent.set()
        await asyncio.Event().wait()  # the client stops sending
        yield b"never"

    task = asyncio.create_task(case.storage.put("c/blob", stalls()))
    await asyncio.wait_for(sent.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert case.leftovers() == []


@pytest.mark.parametrize(
    ("size", "parts"), [(PART, 0), (PART + 1, 2), (3 * PART, 3), (3 * PART + 17, 4)]
)
async def test_large_bodies(case: Case, size: int, parts: int) -> None:
    """Over one part, S3 uses a multipart upload; the bytes and digest are the same."""
    data = body_of(size, seed=size)
    blob = await case.storage.put("big", chunked(data, 50_000))
    assert (blob.size, blob.sha256) == (size, hashlib.sha256(data).hexdigest())
    assert await read_all(case.storage, "big") == data
    assert await read_all(case.storage, "big", PART - 3, PART + 3) == data[PART - 3 : PART + 3]
    if case.multipart_parts is not None:
        assert case.multipart_parts("big") == parts
    assert len(case.leftovers()) == 1


async def test_stored_blobs_satisfy_the_protocol(case: Case) -> None:
    assert isinstance(case.storage, BlobStorage)


# --- local disk specifics ------------------------------------------------------------


async def test_local_writes_under_root_only(tmp_path: Path) -> None:
    storage = LocalDiskStorage(tmp_path / "root")
    await storage.put("a/b/c.bin", chunked(b"hello"))
    assert (tmp_path / "root" / "a" / "b" / "c.bin").read_bytes() == b"hello"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "c.bin", "root"]


async def test_local_directory_is_not_a_blob(tmp_path: Path) -> None:
    storage = LocalDiskStorage(tmp_path)
    await storage.put("dir/file", chunked(b"x"))
    assert not await storage.exists("dir")
    with pytest.raises(BlobNotFound):
        await storage.size("dir")
    with pytest.raises(BlobNotFound):
        await storage.size("dir/file/below")


# --- storage_from_url --------------------------------------------------------------------


def test_url_default_is_local_under_data_dir(tmp_path: Path) -> None:
    for url in ("", "file://"):
        storage = storage_from_url(url, tmp_path)
        assert isinstance(storage, LocalDiskStorage)
        assert storage.root == tmp_path / "files"


def test_url_file_with_absolute_path(tmp_path: Path) -> None:
    storage = storage_from_url(f"file://{tmp_path}/blobs", Path("/unused"))
    assert isinstance(storage, LocalDiskStorage)
    assert storage.root == tmp_path / "blobs"


def test_url_s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    storage = storage_from_url(
        "s3://my-bucket/some/prefix?endpoint_url=http://127.0.0.1:9000&region=eu-west-1",
        tmp_path,
    )
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix) == ("my-bucket", "some/prefix/")
    assert storage.part_size == DEFAULT_PART_SIZE
    assert storage.client.meta.endpoint_url == "http://127.0.0.1:9000"
    assert storage.client.meta.region_name == "eu-west-1"
    assert storage.object_key("k") == "some/prefix/k"


async def test_url_s3_against_real_server(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    url = f"s3://{s3_server.bucket}/via-url?endpoint_url={s3_server.endpoint_url}&region=us-east-1"
    storage = storage_from_url(url, tmp_path)
    await storage.put("x", chunked(b"through the url"))
    assert await read_all(storage, "x") == b"through the url"
    await storage.delete("x")


@pytest.mark.parametrize(
    "url",
    ["s3:///prefix", "s3://b?bogus=1", "ftp://host/x", "relative/path", "file://host/x"],
)
def test_bad_urls_are_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="storage URL"):
        storage_from_url(url, tmp_path)


def test_bad_s3_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        S3Storage(bucket="b", prefix="a/../b")

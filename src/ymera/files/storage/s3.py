"""Blobs as objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto...)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import boto3
from anyio import to_thread
from botocore.config import Config
from botocore.exceptions import ClientError

from ymera.files.storage.base import (
    READ_CHUNK,
    BlobNotFound,
    StoredBlob,
    check_range,
    empty,
    validate_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

#: Bodies up to one part are sent with a single PUT; larger ones as a multipart upload.
DEFAULT_PART_SIZE = 8 * 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _MISSING


class S3Storage:
    """Each blob is the object `prefix + key` in `bucket`.

    A put buffers at most one part (`part_size`, 8 MiB by default; S3 needs at
    least 5 MiB for every part but the last): a body that fits in one part is
    sent with one PUT, a larger one as a multipart upload, aborted if the
    stream fails. boto3 calls run in worker threads.
    """

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        prefix: str = "",
        *,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if prefix:
            validate_key(prefix.strip("/"))
            prefix = prefix.strip("/") + "/"
        if part_size <= 0:
            raise ValueError("part_size must be positive")
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self.client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"} if endpoint_url else {},
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )

    def object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredBlob:
        name = self.object_key(key)
        hasher = hashlib.sha256()
        size = 0
        pending = bytearray()
        upload = _Multipart(self.client, self.bucket, name)
        try:
            async for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                pending += chunk
                while len(pending) >= self.part_size and (
                    upload.started or len(pending) > self.part_size
                ):
                    # Keep one full part back until more arrives, so a body of
                    # exactly one part still goes as a single PUT.
                    part = bytes(pending[: self.part_size])
                    del pending[: self.part_size]
                    await upload.send(part)
            if upload.started:
                if pending:
                    await upload.send(bytes(pending))
                await upload.complete()
            else:
                await to_thread.run_sync(
                    lambda: self.client.put_object(
                        Bucket=self.bucket, Key=name, Body=bytes(pending)
                    )
                )
        except BaseException:
            await upload.abort()
            raise
        return StoredBlob(key=key, size=size, sha256=hasher.hexdigest())

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        check_range(start, end)
        name = self.object_key(key)
        if end is not None and end == start:
            await self.size(key)
            return empty()
        byte_range = f"bytes={start}-" + ("" if end is None else str(end - 1))

        def get() -> Any:
            return self.client.get_object(Bucket=self.bucket, Key=name, Range=byte_range)

        try:
            response = await to_thread.run_sync(get)
        except ClientError as exc:
            if _is_missing(exc):
                raise BlobNotFound(key) from None
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return empty()  # start is at or past the end of the object
            raise
        return _stream(response["Body"])

    async def delete(self, key: str) -> None:
        name = self.object_key(key)
        await to_thread.run_sync(lambda: self.client.delete_object(Bucket=self.bucket, Key=name))

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except BlobNotFound:
            return False
        return True

    async def size(self, key: str) -> int:
        name = self.object_key(key)
        try:
            head = await to_thread.run_sync(
                lambda: self.client.head_object(Bucket=self.bucket, Key=name)
            )
        except ClientError as exc:
            if _is_missing(exc):
                raise BlobNotFound(key) from None
            raise
        return head["ContentLength"]


async def _stream(body: Any) -> AsyncIterator[bytes]:
    try:
        while data := await to_thread.run_sync(body.read, READ_CHUNK):
            yield data
    finally:
        body.close()


class _Multipart:
    """One multipart upload, created lazily on the first part."""

    def __init__(self, client: S3Client, bucket: str, name: str) -> None:
        self.client = client
        self.bucket = bucket
        self.name = name
        self.upload_id: str | None = None
        self.parts: list[CompletedPartTypeDef] = []

    @property
    def started(self) -> bool:
        return self.upload_id is not None

    async def send(self, data: bytes) -> None:
        if self.upload_id is None:
            created = await to_thread.run_sync(
                lambda: self.client.create_multipart_upload(Bucket=self.bucket, Key=self.name)
            )
            self.upload_id = created["UploadId"]
        upload_id = self.upload_id
        number = len(self.parts) + 1
        sent = await to_thread.run_sync(
            lambda: self.client.upload_part(
                Bucket=self.bucket,
                Key=self.name,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )
        )
        self.parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def complete(self) -> None:
        assert self.upload_id is not None
        upload_id = self.upload_id
        await to_thread.run_sync(
            lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.name,
                UploadId=upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        )
        self.upload_id = None

    async def abort(self) -> None:
        if self.upload_id is None:
            return
        upload_id, self.upload_id = self.upload_id, None
        with contextlib.suppress(Exception):
            await to_thread.run_sync(
                lambda: self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.name, UploadId=upload_id
                )
            )

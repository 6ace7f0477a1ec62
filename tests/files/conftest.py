"""A real S3-compatible server (moto) on a free loopback port, one per test session."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fixtures.process import ProcessManager, free_port, wait_http_ok

#: moto refuses parts under this size (S3's rule is 5 MiB); small keeps the tests fast.
MOTO_MIN_PART_SIZE = 64 * 1024


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    region: str = "us-east-1"
    access_key: str = "testing"
    secret_key: str = "testing"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    log_dir = tmp_path_factory.mktemp("moto")
    port = free_port()
    with ProcessManager(log_dir, grace=5.0) as procs:
        proc = procs.start(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            cwd=Path(log_dir),
            env={"S3_UPLOAD_PART_MIN_SIZE": str(MOTO_MIN_PART_SIZE)},
        )
        endpoint = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{endpoint}/moto-api/", process=proc, timeout=30.0)
        server = S3Server(endpoint_url=endpoint, bucket=f"ymera-test-{uuid.uuid4().hex[:12]}")
        s3_client(server).create_bucket(Bucket=server.bucket)
        yield server


def s3_client(server: S3Server) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )

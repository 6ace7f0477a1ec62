"""A 1 GiB upload through a real `ymera serve`: the server's peak memory growth
and its throughput against the disk's raw write speed, measured in the same run.

- The disk: 1 GiB written in 1 MiB blocks to a file in the server's data
  directory, then fsynced (the files API fsyncs every upload before answering).
- The uploads: the same amount streamed to `POST /api/v1/files`, once as a raw
  body and once as multipart/form-data, chunked (the client never holds the
  body either: one random 1 MiB block, sent again and again). The server
  sniffs, counts and hashes it (sha256) while writing it to local storage.
- Memory: the server's peak RSS (`VmHWM`, reset through `/proc/PID/clear_refs`
  before each upload) minus its RSS before the upload.

Bars (issue 6): peak growth < 50 MiB; throughput reported as a ratio of the raw
disk speed.

    python -m bench upload [--mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from bench.dispatch import PASSWORD, Procs, server_env, start_server

BLOCK = 1024 * 1024
MEMORY_BAR_MIB = 50.0


def _status(pid: int, field: str) -> int:
    """A field of /proc/PID/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def disk_write_speed(directory: Path, total: int) -> float:
    """Bytes per second for `total` bytes written in 1 MiB blocks and fsynced."""
    block = os.urandom(BLOCK)
    path = directory / "disk-probe.bin"
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(total // BLOCK):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - started
    path.unlink()
    return total / elapsed


async def _upload(url: str, token: str, total: int, multipart: bool) -> tuple[float, dict]:  # type: ignore[type-arg]
    block = os.urandom(BLOCK)
    boundary = "bench-boundary-7d1c"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    expected = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        if multipart:
            yield head
        for _ in range(total // BLOCK):
            expected.update(block)
            yield block
        if multipart:
            yield tail

    headers = {"Authorization": f"Bearer {token}"}
    params = {}
    if multipart:
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    else:
        headers["Content-Type"] = "application/octet-stream"
        params["name"] = "big.bin"
    async with httpx.AsyncClient(timeout=600) as client:
        started = time.perf_counter()
        resp = await client.post(
            f"{url}/api/v1/files", params=params, content=body(), headers=headers
        )
        elapsed = time.perf_counter() - started
    resp.raise_for_status()
    meta = resp.json()
    if meta["size"] != total or meta["sha256"] != expected.hexdigest():
        raise RuntimeError(f"stored {meta['size']} bytes, sha256 {meta['sha256']}")
    return elapsed, meta


async def _token(url: str) -> str:
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            f"{url}/api/v1/auth/token", data={"username": "bench", "password": PASSWORD}
        )
        resp.raise_for_status()
        return str(resp.json()["access_token"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench upload")
    parser.add_argument("--mib", type=int, default=1024, help="upload size in MiB")
    args = parser.parse_args(argv)
    total = args.mib * BLOCK
    ok = True
    with tempfile.TemporaryDirectory(prefix="ymera-bench-upload-") as tmp_name:
        tmp = Path(tmp_name)
        procs = Procs(tmp)
        env = server_env(
            tmp,
            YMERA_FILES__MAX_UPLOAD_BYTES=str(4 * total),
            YMERA_FILES__QUOTA_BYTES=str(16 * total),
        )
        try:
            url = start_server(procs, env, tmp, "server")
            pid = procs.procs[-1].pid
            token = asyncio.run(_token(url))
            (tmp / "data").mkdir(exist_ok=True)
            disk = disk_write_speed(tmp / "data", total)
            print(f"disk raw write (1 MiB blocks + fsync): {disk / BLOCK:8.1f} MiB/s")
            for multipart in (False, True):
                kind = "multipart" if multipart else "raw body"
                before = _status(pid, "VmRSS")
                _reset_peak(pid)
                elapsed, _ = asyncio.run(_upload(url, token, total, multipart))
                peak = _status(pid, "VmHWM")
                growth = (peak - before) / BLOCK
                speed = total / elapsed
                ok &= growth < MEMORY_BAR_MIB
                print(
                    f"upload {args.mib} MiB ({kind:9}): {elapsed:6.2f} s, {speed / BLOCK:7.1f} "
                    f"MiB/s = {speed / disk:5.2f} x disk; server RSS {before / BLOCK:6.1f} MiB, "
                    f"peak growth {growth:5.1f} MiB (bar < {MEMORY_BAR_MIB:.0f})"
                )
        finally:
            procs.stop()
    print("bar met" if ok else "BAR MISSED")
    return 0 if ok else 1

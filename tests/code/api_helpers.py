"""Shared helpers for the code editor API tests (workspaces, edits, git, analysis)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import tarfile
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import AppHarness
from tests.fixtures.passwords import cheapen_argon2
from ymera.app import create_app
from ymera.auth.permissions import Role

API = "/api/v1/workspaces"


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its production cost (~0.1 s a hash) would dominate these tests."""
    cheapen_argon2(monkeypatch)


async def create_workspace(
    h: AppHarness, role: Role = Role.DEVELOPER, **body: Any
) -> dict[str, Any]:
    body.setdefault("name", "ws")
    resp = await h.client.post(API, json=body, headers=await h.headers(role))
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def root_of(h: AppHarness, ws_id: str) -> Path:
    return Path(h.settings.data_dir) / "workspaces" / ws_id / "files"


async def editor(
    h: AppHarness, ws_id: str, role: Role = Role.DEVELOPER, **command: Any
) -> httpx.Response:
    return await h.client.post(f"{API}/{ws_id}/editor", json=command, headers=await h.headers(role))


async def ok_editor(
    h: AppHarness, ws_id: str, role: Role = Role.DEVELOPER, **command: Any
) -> dict[str, Any]:
    resp = await editor(h, ws_id, role, **command)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def post(h: AppHarness, url: str, role: Role = Role.DEVELOPER, **body: Any) -> httpx.Response:
    return await h.client.post(f"{API}/{url}", json=body, headers=await h.headers(role))


async def get(h: AppHarness, url: str, role: Role = Role.VIEWER, **params: Any) -> httpx.Response:
    target = f"{API}/{url}" if url else API
    return await h.client.get(target, params=params, headers=await h.headers(role))


def problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = dict(resp.json())
    assert body["code"] == code, body
    return body


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "git",
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=tester@example.com",
            "-c",
            "core.autocrlf=false",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=check,
    )


def make_repo(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q")
    for name, data in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial")
    return path


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def upload(
    h: AppHarness, data: bytes, role: Role = Role.DEVELOPER, **params: Any
) -> httpx.Response:
    params.setdefault("name", "uploaded")
    return await h.client.post(
        f"{API}/archive",
        params=params,
        content=data,
        headers={**await h.headers(role), "Content-Type": "application/octet-stream"},
    )


async def events_of(h: AppHarness, type_: str, count: int = 1) -> list[dict[str, Any]]:
    """Events of one type (the relay sequences them asynchronously: poll)."""
    items: list[dict[str, Any]] = []
    for _ in range(100):
        resp = await h.client.get(
            "/api/v1/events", params={"type": type_}, headers=await h.headers(Role.ADMIN)
        )
        items = list(resp.json()["items"])
        if len(items) >= count:
            return items
        await asyncio.sleep(0.05)
    return items


@asynccontextmanager
async def another_app(h: AppHarness, **code: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database and data directory (a restart, or another
    replica), with ``code`` settings changed; a client for it."""
    settings = h.settings.model_copy(update={"code": h.settings.code.model_copy(update=code)})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as client:
            yield client

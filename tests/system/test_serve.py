"""`ymera serve` as a real process: starts, migrates, prints the first admin's
credentials, serves the API and docs, and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures import services
from tests.fixtures.process import (
    ManagedProcess,
    ProcessManager,
    free_port,
    wait_for,
    wait_http_ok,
    ymera_command,
)

pytestmark = pytest.mark.system

STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 15.0
_ADMIN = re.compile(r"username: (\S+)\s.*?password: (\S+)", re.DOTALL)


def _start_server(
    procs: ProcessManager, name: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    port = free_port()
    proc = procs.start(
        name, ymera_command("serve", "--host", "127.0.0.1", "--port", str(port)), cwd=cwd, env=env
    )
    return proc, f"http://127.0.0.1:{port}"


def _admin_credentials(proc: ManagedProcess) -> tuple[str, str] | None:
    found = _ADMIN.search(proc.log())
    return (found.group(1), found.group(2)) if found else None


def _login(base: str, username: str, password: str) -> str:
    resp = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": username, "password": password}
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def _assert_token_accepted(base: str, token: str) -> None:
    resp = httpx.get(f"{base}/api/v1/api-keys", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["items"] == []


def _assert_clean_sigterm(proc: ManagedProcess) -> None:
    code = proc.terminate(SHUTDOWN_TIMEOUT)
    assert code == 0, f"exit code {code}\n{proc.describe()}"
    log = proc.log()
    assert '"event": "stopped"' in log, proc.describe()
    assert '"level": "error"' not in log, proc.describe()


class SseReader(threading.Thread):
    """Reads an SSE stream in the background; records its lines and how it ended."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.token = token
        self.lines: list[str] = []
        self.outcome: str | None = None  # "closed" (clean end) or the exception

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        try:
            with httpx.stream("GET", self.url, headers=headers, timeout=None) as resp:
                for line in resp.iter_lines():
                    self.lines.append(line)
            self.outcome = "closed"
        except Exception as exc:
            self.outcome = repr(exc)


def test_serve_on_sqlite(processes: ProcessManager, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    workdir.mkdir()
    # A long grace period: shutdown must not wait for it even with a stream open.
    env = {"YMERA_SERVER__GRACEFUL_SHUTDOWN_SECONDS": "60"}
    server, base = _start_server(processes, "serve-sqlite", workdir, env)

    ready = wait_http_ok(f"{base}/readyz", process=server, timeout=STARTUP_TIMEOUT)
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["bus"] == "memory: ok"
    # Embedded defaults: the database and the JWT key live in ./.ymera of the cwd.
    assert (workdir / ".ymera" / "ymera.db").is_file()
    assert (workdir / ".ymera" / "secret_key").is_file()

    creds = wait_for(
        lambda: _admin_credentials(server),
        timeout=5,
        what="admin credentials in the output",
        context=server.describe,
    )
    assert creds[0] == "admin"
    token = _login(base, *creds)
    _assert_token_accepted(base, token)
    assert httpx.get(f"{base}/api/v1/api-keys").status_code == 401

    docs = httpx.get(f"{base}/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text.lower()
    openapi = httpx.get(f"{base}/openapi.json")
    assert openapi.status_code == 200
    assert "/api/v1/auth/token" in openapi.json()["paths"]

    # An open event stream (replaying from the start) must not hold up shutdown,
    # and must end cleanly so the client can resume elsewhere.
    stream = SseReader(f"{base}/api/v1/events?after=0", token)
    stream.start()
    wait_for(
        lambda: any(line == "event: user.created" for line in stream.lines),
        timeout=10,
        what="the admin's user.created event on the stream",
        context=lambda: f"stream: {stream.lines} {stream.outcome}",
    )
    _assert_clean_sigterm(server)
    stream.join(timeout=5)
    assert stream.outcome == "closed", stream.outcome


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    services.need("postgres")
    name = services.unique_name("ymera_system")
    asyncio.run(services.create_pg_database(name))
    try:
        yield services.pg_url_for(name).replace("postgresql+asyncpg://", "postgresql://", 1)
    finally:
        services.drop_pg_database_later(name)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    services.need("redis")
    prefix = services.unique_name("ymera_system") + ":"
    yield prefix
    services.flush_redis_prefix(prefix)


def test_two_replicas_on_postgresql_and_redis(
    fresh_pg_url: str, redis_prefix: str, processes: ProcessManager, tmp_path: Path
) -> None:
    """Two replicas start at once on an empty database: they migrate without
    colliding, exactly one creates the admin, and a token from one works on the other."""
    # Fixture order matters: the processes stop before the database is dropped.
    env = {
        "YMERA_DATABASE_URL": fresh_pg_url,
        "YMERA_REDIS_URL": services.REDIS_URL,
        "YMERA_REDIS_PREFIX": redis_prefix,
        "YMERA_AUTH__SECRET_KEY": "system-test-shared-secret-0123456789abcdef",
    }
    replicas = []
    for name in ("replica-a", "replica-b"):
        workdir = tmp_path / name
        workdir.mkdir()
        replicas.append(_start_server(processes, name, workdir, env))

    for (proc, base), name in zip(replicas, ("replica-a", "replica-b"), strict=True):
        ready = wait_http_ok(f"{base}/readyz", process=proc, timeout=STARTUP_TIMEOUT)
        assert ready.json()["checks"]["bus"] == "redis: ok"
        assert ready.json()["checks"]["migrations"] == "ok"
        # The shared key is used; nothing is generated per replica.
        assert not (tmp_path / name / ".ymera" / "secret_key").exists()

    printed = [c for c in (_admin_credentials(p) for p, _ in replicas) if c]
    assert len(printed) == 1, processes.describe()
    base_a, base_b = (base for _, base in replicas)
    token = _login(base_a, *printed[0])
    _assert_token_accepted(base_b, token)

    for proc, _ in replicas:
        _assert_clean_sigterm(proc)


def test_serve_that_cannot_start_exits_non_zero(processes: ProcessManager, tmp_path: Path) -> None:
    """A server whose database cannot be opened must not linger half-started."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    server, _ = _start_server(processes, "serve-broken", tmp_path, {"YMERA_DATA_DIR": str(blocker)})
    code = server.wait(STARTUP_TIMEOUT)
    assert code == 3, server.describe()
    assert "Application startup failed" in server.log(), server.describe()

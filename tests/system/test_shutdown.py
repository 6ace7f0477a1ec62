"""Graceful shutdown of a real ``ymera serve``: SIGTERM while pushes to an http
agent are in flight. A push that finishes within the grace period completes; one
still unfinished at the deadline is handed back (PENDING, the attempt not counted);
the process exits with status 0 within the grace period, and the restarted server
runs the handed-back task at once instead of waiting for its lease to expire.

The http agent is a real HTTP server on loopback whose handler holds each task
until the test opens its gate. The 503s of /readyz and task submissions while
draining are not observable here (uvicorn closes its listening socket as shutdown
begins); tests/tasks/test_graceful_shutdown.py checks them in-process.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.process import ProcessManager, wait_for
from tests.fixtures.workers import YmeraServer, fast_settings
from ymera.app import shutdown_reserve

pytestmark = pytest.mark.system

GRACE = 3.0
PUSH_TIME = GRACE - shutdown_reserve(GRACE)  # what pushes in flight get to finish


class HoldingAgent:
    """An http agent whose ``POST /tasks`` holds each task until its gate opens
    (the gate is the task input's ``hold`` value); ``GET /health`` answers 200."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[str] = []  # task ids, in arrival order
        self.gates: dict[str, threading.Event] = {}
        self.open_all = threading.Event()
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(200, {"ok": True})

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with agent.lock:
                    agent.received.append(payload["task_id"])
                gate = agent.gate(str(payload["input"].get("hold", "")))
                while not (gate.is_set() or agent.open_all.is_set()):
                    gate.wait(0.05)
                self._answer(200, {"output": {"done": payload["task_id"]}})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the caller gave up (a push stopped at shutdown)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def got(self, *task_ids: str) -> bool:
        with self.lock:
            return set(task_ids) <= set(self.received)


@pytest.fixture
def holding_agent() -> Iterator[HoldingAgent]:
    agent = HoldingAgent()
    agent.thread.start()
    try:
        yield agent
    finally:
        agent.open_all.set()
        agent.server.shutdown()
        agent.server.server_close()


def _task_rows(db_path: Path, *task_ids: str) -> dict[str, dict[str, Any]]:
    """The tasks as stored, read straight from the (stopped) server's SQLite file."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        marks = ",".join("?" for _ in task_ids)
        rows = conn.execute(
            "SELECT id, status, attempt, max_attempts, lease_token, error, result "
            f"FROM tasks WHERE id IN ({marks})",
            task_ids,
        ).fetchall()
    finally:
        conn.close()
    return {row["id"]: dict(row) for row in rows}


def test_sigterm_hands_back_unfinished_pushes_and_exits_within_the_grace_period(
    processes: ProcessManager, tmp_path: Path, holding_agent: HoldingAgent
) -> None:
    env = fast_settings(
        heartbeat_timeout=60.0,  # the agent stays routable; only the shutdown moves tasks
        extra={"YMERA_SERVER__GRACEFUL_SHUTDOWN_SECONDS": str(GRACE)},
    )
    server = YmeraServer(processes, tmp_path / "server", env=env)
    proc = server.start()
    api = server.api()
    agent = api._ok(
        api.http.post(
            "/api/v1/agents",
            json={
                "name": "holder",
                "connection_mode": "http",
                "endpoint_url": holding_agent.url,
                "max_concurrency": 2,
            },
        ),
        201,
    )
    beat = api._ok(api.http.post(f"/api/v1/agents/{agent['id']}/heartbeat"))
    assert beat["status"] == "IDLE", beat

    # One attempt each: had a hand-back counted as an attempt, the task would be DEAD.
    quick = api.submit("push", {"hold": "quick"}, max_attempts=1)
    stuck = api.submit("push", {"hold": "stuck"}, max_attempts=1)
    wait_for(
        lambda: holding_agent.got(quick["id"], stuck["id"]),
        timeout=15,
        what="both pushes in flight at the agent",
        context=processes.describe,
    )
    for task in (quick, stuck):
        assert api.task(task["id"])["status"] == "ASSIGNED"
    api.close()

    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    wait_for(
        lambda: '"event": "shutting_down"' in proc.log(),
        timeout=GRACE,
        what="the server to begin shutting down",
        context=proc.describe,
    )
    holding_agent.gate("quick").set()  # this push finishes within the grace period
    code = proc.wait(GRACE + 10)
    took = time.monotonic() - began

    assert code == 0, proc.describe()
    assert took < GRACE, f"exit after {took:.2f}s\n{proc.describe()}"
    # The stuck push had its chance: it was stopped only near the deadline.
    assert took >= PUSH_TIME, f"exit after {took:.2f}s\n{proc.describe()}"
    log = proc.log()
    assert '"event": "push_handed_back"' in log, proc.describe()
    assert '"event": "stopped"' in log, proc.describe()
    assert '"level": "error"' not in log, proc.describe()

    rows = _task_rows(tmp_path / "server" / ".ymera" / "ymera.db", quick["id"], stuck["id"])
    done, back = rows[quick["id"]], rows[stuck["id"]]
    assert (done["status"], done["attempt"]) == ("SUCCEEDED", 1), done
    assert json.loads(done["result"]) == {"done": quick["id"]}
    assert back["status"] == "PENDING", back
    assert (back["attempt"], back["max_attempts"]) == (1, 2), back  # not counted
    assert back["lease_token"] is None
    assert json.loads(back["error"]) == {"message": "server shutting down", "type": "released"}

    # Restarted, the server runs it at once: the lease (minutes for a push) was given
    # back rather than left to expire.
    holding_agent.open_all.set()
    server.start()
    api = server.api()
    rerun = api.wait_task(stuck["id"], "SUCCEEDED", "FAILED", "DEAD", timeout=15)
    assert (rerun["status"], rerun["attempt"]) == ("SUCCEEDED", 2), rerun
    assert rerun["result"] == {"done": stuck["id"]}
    api.close()

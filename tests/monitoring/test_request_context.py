"""X-Request-ID on every response, and one JSON log line per request carrying it."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tests.conftest import AppHarness
from ymera.logging import configure_logging

GENERATED = re.compile(r"^[0-9a-f]{32}$")


class CapturedLogs:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[dict[str, Any]]:
        """Every line written so far, each parsed as JSON (a non-JSON line fails)."""
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    """Logging configured as `ymera serve` does it (JSON lines), written to a buffer;
    the previous logging setup is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_config = structlog.get_config()
    configure_logging("INFO", json_format=True)
    # Caching would pin module loggers to this setup for the tests that follow.
    structlog.configure(cache_logger_on_first_use=False)
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield CapturedLogs(stream)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_config)


async def test_a_request_id_is_generated_for_each_response(harness: AppHarness) -> None:
    first = await harness.client.get("/healthz")
    second = await harness.client.get("/nowhere")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(GENERATED.match(i) for i in ids), ids
    assert ids[0] != ids[1]
    # Error bodies carry the same id, so a user's report can be matched to the logs.
    assert second.json()["request_id"] == ids[1]


async def test_a_valid_incoming_request_id_is_echoed(harness: AppHarness) -> None:
    for incoming in ("abc-123", "trace.id:7_Z", "x" * 128):
        resp = await harness.client.get("/healthz", headers={"X-Request-ID": incoming})
        assert resp.headers["x-request-id"] == incoming


INVALID_IDS = [
    b"has space",
    b"x" * 129,
    b"semi;colon",
    b"tab\tin",
    "\xfcber".encode("latin-1"),
    b"",
]


async def test_an_invalid_incoming_request_id_is_replaced(harness: AppHarness) -> None:
    for incoming in INVALID_IDS:
        resp = await harness.client.get("/nowhere", headers=[(b"X-Request-ID", incoming)])
        rid = resp.headers["x-request-id"]
        assert GENERATED.match(rid), (incoming, rid)
        assert resp.json()["request_id"] == rid


async def test_each_request_is_one_json_log_line_with_its_request_id(
    harness: AppHarness, captured_logs: CapturedLogs
) -> None:
    resp = await harness.client.get("/api/v1/auth/me", headers={"X-Request-ID": "trace-42"})
    assert resp.status_code == 401
    await harness.client.get("/healthz")  # probes are not logged

    requests = captured_logs.events("request")
    assert len(requests) == 1, captured_logs.lines()
    line = requests[0]
    assert line["request_id"] == "trace-42"
    assert line["method"] == "GET"
    assert line["path"] == "/api/v1/auth/me"
    assert line["route"] == "/api/v1/auth/me"
    assert line["status"] == 401
    assert line["duration_ms"] >= 0
    assert line["level"] == "info"
    assert line["logger"] == "ymera.http"
    assert "timestamp" in line


async def test_logs_written_while_handling_a_request_carry_its_id(
    harness: AppHarness, captured_logs: CapturedLogs
) -> None:
    """An unexpected error is a 500 problem+json, and its logged traceback has the
    request id of the response the client got."""

    async def boom() -> None:
        raise RuntimeError("kaboom")

    harness.app.add_api_route("/test-only/boom", boom)
    resp = await harness.client.get("/test-only/boom", headers={"X-Request-ID": "boom-1"})

    assert resp.status_code == 500
    assert resp.headers["x-request-id"] == "boom-1"
    assert resp.json()["request_id"] == "boom-1"
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "internal_error"
    assert "kaboom" not in resp.text  # no internals leak to the client
    errors = captured_logs.events("unhandled_error")
    assert errors, captured_logs.lines()
    assert errors[0]["request_id"] == "boom-1"
    assert errors[0]["level"] == "error"
    assert "RuntimeError: kaboom" in errors[0]["exception"]
    requests = captured_logs.events("request")
    assert [(r["request_id"], r["status"]) for r in requests] == [("boom-1", 500)]
    metrics = (await harness.client.get("/metrics")).text
    assert 'method="GET",route="/test-only/boom",status="500"} 1.0' in metrics

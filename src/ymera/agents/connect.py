"""`/api/v1/agents/connect`: the worker protocol's server side (docs/worker-protocol.md).

The edge of the worker protocol: it parses frames, authenticates the agent key
in the first frame, and calls one service function per frame in its own unit
of work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from datetime import datetime
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.exc import SQLAlchemyError

from ymera.agents import service as agents_service
from ymera.agents.hub import WorkerConnection, WorkerHub
from ymera.auth.dependencies import authenticate
from ymera.auth.permissions import Permission
from ymera.errors import YmeraError
from ymera.kit import jsonx
from ymera.state import AppState
from ymera.tasks import leases
from ymera.tasks import service as tasks_service
from ymera.tasks.dispatcher import Dispatcher
from ymera.tasks.writer import TaskWriter

log = structlog.get_logger("ymera.connect")
router = APIRouter()

PROTOCOL = 1
FEATURES = ("batch",)  # optional protocol features this server speaks
MAX_FRAME = 1024 * 1024
MAX_BATCH_BYTES = 16 * 1024 * 1024
HELLO_TIMEOUT = 10.0

CLOSE_BAD_HELLO = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_PROTOCOL = 4409
CLOSE_TOO_BIG = 1009

TASK_OUTPUT_CHANNEL = "task.output"


class _Refused(Exception):
    """A handshake refused: the socket is closed with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _hello_options(hello: dict[str, Any]) -> tuple[int, frozenset[str] | None]:
    """The hello's concurrency (1..10,000) and the task types it takes (None: any)."""
    try:
        concurrency = max(1, min(10_000, int(hello.get("concurrency", 1))))
    except (TypeError, ValueError):
        raise _Refused(CLOSE_BAD_HELLO, "concurrency must be an integer") from None
    raw_types = hello.get("task_types")
    task_types = (
        frozenset(str(t) for t in raw_types if isinstance(t, str))
        if isinstance(raw_types, list) and raw_types
        else None
    )
    return concurrency, task_types


def _ref(frame: dict[str, Any]) -> tasks_service.LeaseRef:
    try:
        return tasks_service.LeaseRef(
            task_id=str(frame["task_id"]),
            attempt=int(frame["attempt"]),
            lease_token=str(frame["lease_token"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("frame needs task_id, attempt and lease_token") from exc


class Session:
    """One worker connection: the receive loop and the frame handlers."""

    def __init__(self, state: AppState, ws: WebSocket) -> None:
        self.state = state
        self.ws = ws
        self.hub: WorkerHub = state.extras["hub"]
        self.dispatcher: Dispatcher = state.extras["dispatcher"]
        self.conn: WorkerConnection | None = None
        self._pending: set[asyncio.Future[Any]] = set()  # reports not yet committed
        # The instant a batch frame arrived: its reports share it (and so the
        # conversions and sums a commit caches per instant).
        self._received: datetime | None = None

    def _now(self) -> datetime:
        """When the frame being handled arrived."""
        return self._received or self.state.clock.now()

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    async def handshake(self) -> WorkerConnection | None:
        """Read and check the hello, authenticate, attach the agent (its held
        tasks renewed or revoked) and welcome it; None (the socket closed with
        the reason) when any of it is refused."""
        try:
            hello = await self._read_hello()
            agent_id = await self._authenticate(hello)
            concurrency, task_types = _hello_options(hello)
            name, kept, lost = await self._attach(agent_id, hello)
        except _Refused as refused:
            await self._close(refused.code, refused.reason)
            return None
        cfg = self.state.settings
        conn = WorkerConnection(
            agent_id=agent_id,
            agent_name=name,
            session_id=secrets.token_hex(8),
            concurrency=concurrency,
            sink=self.ws,
            queue_size=cfg.agents.send_queue_size,
            held=set(kept),
            task_types=task_types,
            batch_frames="batch" in (hello.get("features") or []),
        )
        conn.start()
        await self.hub.register(conn)
        conn.send(
            {
                "type": "welcome",
                "protocol": PROTOCOL,
                "agent_id": conn.agent_id,
                "session_id": conn.session_id,
                "heartbeat_interval": cfg.agents.heartbeat_interval,
                "lease_seconds": cfg.tasks.lease_seconds,
                "kept": kept,
                "revoked": lost,
                "features": list(FEATURES),
            }
        )
        log.info("worker_connected", agent=name, concurrency=concurrency, kept=len(kept))
        self.dispatcher.wake()
        return conn

    async def _read_hello(self) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self.ws.receive_text(), HELLO_TIMEOUT)
            hello = json.loads(raw)
        except (TimeoutError, ValueError):
            raise _Refused(CLOSE_BAD_HELLO, "expected a hello frame") from None
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            raise _Refused(CLOSE_BAD_HELLO, "expected a hello frame")
        if hello.get("protocol") != PROTOCOL:
            raise _Refused(CLOSE_PROTOCOL, f"protocol {PROTOCOL} only")
        return hello

    async def _authenticate(self, hello: dict[str, Any]) -> str:
        """The agent id of the hello's key, which must be an agent's, allowed to
        connect."""
        key = hello.get("api_key")
        if not isinstance(key, str) or not key:
            raise _Refused(CLOSE_UNAUTHORIZED, "api_key required")
        try:
            principal = await authenticate(self.state, key)
        except YmeraError as exc:
            raise _Refused(CLOSE_UNAUTHORIZED, exc.message[:100]) from None
        if principal.kind != "agent" or not principal.agent_id:
            raise _Refused(CLOSE_FORBIDDEN, "an agent key is required")
        if not principal.can(Permission.AGENTS_CONNECT):
            raise _Refused(CLOSE_FORBIDDEN, "key lacks agents:connect")
        return principal.agent_id

    async def _attach(
        self, agent_id: str, hello: dict[str, Any]
    ) -> tuple[str, list[str], list[str]]:
        """Mark the agent connected and renew the leases of the tasks it says it
        holds: its name, the task ids it keeps and those it no longer holds."""
        held = [h for h in hello.get("held") or [] if isinstance(h, dict)]
        now = self.state.clock.now()
        try:
            async with self.state.db.transaction() as session:
                agent = await agents_service.mark_connected(
                    session,
                    agent_id=agent_id,
                    now=now,
                    replica=self.state.extras.get("replica_id"),
                )
                refs = []
                for item in held:
                    with contextlib.suppress(ValueError):
                        refs.append(_ref(item))
                lost = await leases.renew(
                    session,
                    agent_id=agent.id,
                    refs=refs,
                    now=now,
                    lease_seconds=self.state.settings.tasks.lease_seconds,
                )
                name = agent.name
        except YmeraError as exc:
            raise _Refused(CLOSE_NOT_FOUND, exc.message[:100]) from None
        return name, [r.task_id for r in refs if r.task_id not in lost], lost

    async def run(self) -> None:
        conn = await self.handshake()
        if conn is None:
            return
        self.conn = conn
        try:
            while not conn.closed:
                raw = await self.ws.receive_text()
                if len(raw) > MAX_FRAME and not (
                    len(raw) <= MAX_BATCH_BYTES and raw.startswith('{"type":"batch"')
                ):
                    await conn.close(CLOSE_TOO_BIG, "frame too large")
                    break
                await self.handle(raw)
        except WebSocketDisconnect:
            pass
        finally:
            if self._pending:
                await asyncio.wait(list(self._pending), timeout=5)
            await conn.stop_sender()
            self.hub.unregister(conn)
            log.info("worker_disconnected", agent=conn.agent_name, held=len(conn.held))

    async def handle(self, raw: str) -> None:
        assert self.conn is not None
        try:
            frame = jsonx.loads(raw)
        except ValueError as exc:
            self.conn.send({"type": "error", "code": "bad_frame", "message": str(exc)[:300]})
            return
        if isinstance(frame, dict) and frame.get("type") == "batch":
            frames = frame.get("frames")
            if not isinstance(frames, list):
                self.conn.send(
                    {"type": "error", "code": "bad_frame", "message": "batch needs frames"}
                )
                return
            self._received = self.state.clock.now()
            try:
                for inner in frames:  # in order, as if sent one by one
                    if isinstance(inner, dict) and inner.get("type") == "batch":
                        self.conn.send(
                            {"type": "error", "code": "bad_frame", "message": "nested batch"}
                        )
                        continue
                    await self.handle_frame(inner)
            finally:
                self._received = None
            return
        await self.handle_frame(frame)

    async def handle_frame(self, frame: Any) -> None:
        assert self.conn is not None
        try:
            if not isinstance(frame, dict):
                raise ValueError("frame must be a JSON object")
            kind = frame.get("type")
            handler = getattr(self, f"on_{kind}", None) if isinstance(kind, str) else None
            if handler is None:
                raise ValueError(f"unknown frame type {kind!r}")
            await handler(frame)
        except tasks_service.StaleLease as exc:
            self._drop(frame)
            self.conn.send(
                {"type": "error", "code": exc.code, "message": exc.message, "ref": _ref_of(frame)}
            )
        except YmeraError as exc:
            self.conn.send(
                {"type": "error", "code": exc.code, "message": exc.message, "ref": _ref_of(frame)}
            )
        except ValueError as exc:
            self.conn.send({"type": "error", "code": "bad_frame", "message": str(exc)[:300]})
        except SQLAlchemyError as exc:
            # A transient database failure (e.g. a deadlock victim) must not cut a
            # healthy worker off: it retries with its next heartbeat or report.
            kind = frame.get("type") if isinstance(frame, dict) else None
            log.warning("frame_failed", error=repr(exc)[:300], frame_type=kind)
            self.conn.send({"type": "error", "code": "unavailable", "ref": _ref_of(frame)})

    def _drop(self, frame: dict[str, Any]) -> None:
        assert self.conn is not None
        task_id = frame.get("task_id")
        if isinstance(task_id, str):
            self.conn.held.discard(task_id)

    def _ack(self, frame: dict[str, Any]) -> None:
        assert self.conn is not None
        self.conn.send({"type": "ack", "ref": _ref_of(frame)})

    # --- frame handlers ------------------------------------------------------------

    def _report(self, frame: dict[str, Any], op: Any, *, frees_slot: bool) -> None:
        """Queue a report for the group-committing writer, in frame order; the ack
        (or the error) goes back when its batch has committed (a callback on the
        write's future: no task per report)."""
        assert self.conn is not None
        writer: TaskWriter = self.state.extras["writer"]
        future = writer.submit(
            op, agent_id=self.conn.agent_id, task_id=_ref_of(frame), frees_slot=frees_slot
        )
        self._pending.add(future)
        future.add_done_callback(lambda done: self._settle(frame, done, frees_slot=frees_slot))

    def _settle(
        self, frame: dict[str, Any], future: asyncio.Future[Any], *, frees_slot: bool
    ) -> None:
        self._pending.discard(future)
        assert self.conn is not None
        if future.cancelled():
            return
        exc = future.exception()
        if isinstance(exc, tasks_service.StaleLease):
            self._drop(frame)
            self.conn.send(
                {"type": "error", "code": exc.code, "message": exc.message, "ref": _ref_of(frame)}
            )
            return
        if isinstance(exc, YmeraError):
            self.conn.send(
                {"type": "error", "code": exc.code, "message": exc.message, "ref": _ref_of(frame)}
            )
            return
        if exc is not None:
            log.warning("report_failed", error=repr(exc), frame_type=frame.get("type"))
            self.conn.send({"type": "error", "code": "internal", "ref": _ref_of(frame)})
            return
        if frees_slot:
            self._drop(frame)
            self.dispatcher.wake(backlog=False)
        self._ack(frame)

    async def on_accept(self, frame: dict[str, Any]) -> None:
        ref = _ref(frame)
        now = self._now()
        lease = self.state.settings.tasks.lease_seconds

        async def op(session: Any) -> Any:
            return await leases.accept(session, ref=ref, now=now, lease_seconds=lease)

        self._report(frame, op, frees_slot=False)

    async def on_progress(self, frame: dict[str, Any]) -> None:
        ref = _ref(frame)
        pct = frame.get("pct")
        message = str(frame.get("message") or "") or None
        now = self._now()
        lease = self.state.settings.tasks.lease_seconds

        async def op(session: Any) -> Any:
            return await leases.progress(
                session,
                ref=ref,
                pct=float(pct) if isinstance(pct, int | float) else None,
                message=message,
                now=now,
                lease_seconds=lease,
            )

        self._report(frame, op, frees_slot=False)
        await self.state.bus.publish(
            TASK_OUTPUT_CHANNEL,
            {
                "task_id": ref.task_id,
                "attempt": ref.attempt,
                "kind": "progress",
                "pct": pct,
                "message": message,
            },
        )

    async def on_output(self, frame: dict[str, Any]) -> None:
        ref = _ref(frame)
        assert self.conn is not None
        if ref.task_id not in self.conn.held:
            raise tasks_service.StaleLease(f"task {ref.task_id} is not held by this connection")
        await self.state.bus.publish(
            TASK_OUTPUT_CHANNEL,
            {
                "task_id": ref.task_id,
                "attempt": ref.attempt,
                "kind": "output",
                "chunk": str(frame.get("chunk", ""))[:65536],
                "seq": frame.get("seq"),
            },
        )

    async def on_result(self, frame: dict[str, Any]) -> None:
        ref = _ref(frame)
        output = frame.get("output")
        if output is None:
            output = {}
        if not isinstance(output, dict):
            output = {"value": output}
        now = self._now()

        async def op(session: Any) -> Any:
            return await leases.complete(session, ref=ref, output=output, now=now)

        self._report(frame, op, frees_slot=True)

    async def on_fail(self, frame: dict[str, Any]) -> None:
        ref = _ref(frame)
        error = frame.get("error") if isinstance(frame.get("error"), dict) else {}
        assert isinstance(error, dict)
        retryable = bool(error.get("retryable", True))
        clean = {
            "message": str(error.get("message", "failed"))[:2000],
            "type": str(error.get("type", "error"))[:100],
            "retryable": retryable,
        }
        now = self._now()

        async def op(session: Any) -> Any:
            return await leases.fail(session, ref=ref, error=clean, retryable=retryable, now=now)

        self._report(frame, op, frees_slot=True)

    async def on_release(self, frame: dict[str, Any]) -> None:
        ref = _ref(frame)
        reason = str(frame.get("reason") or "released by the worker")[:500]
        now = self._now()

        async def op(session: Any) -> Any:
            return await leases.release(session, ref=ref, now=now, reason=reason)

        self._report(frame, op, frees_slot=True)

    async def on_heartbeat(self, frame: dict[str, Any]) -> None:
        assert self.conn is not None
        refs = []
        for item in frame.get("tasks") or []:
            if isinstance(item, dict):
                with contextlib.suppress(ValueError):
                    refs.append(_ref(item))
        now = self._now()
        async with self.state.db.transaction() as session:
            await agents_service.mark_connected(
                session,
                agent_id=self.conn.agent_id,
                now=now,
                replica=self.state.extras.get("replica_id"),
            )
            lost = await leases.renew(
                session,
                agent_id=self.conn.agent_id,
                refs=refs,
                now=now,
                lease_seconds=self.state.settings.tasks.lease_seconds,
            )
        for task_id in lost:
            self.conn.held.discard(task_id)
            self.conn.send({"type": "cancel", "task_id": task_id, "reason": "lease lost"})

    async def on_pong(self, frame: dict[str, Any]) -> None:
        return None

    async def on_drain(self, frame: dict[str, Any]) -> None:
        assert self.conn is not None
        self.conn.draining = True


def _ref_of(frame: Any) -> str | None:
    if isinstance(frame, dict):
        task_id = frame.get("task_id")
        return str(task_id) if task_id is not None else None
    return None


@router.websocket("/api/v1/agents/connect")
async def connect(ws: WebSocket) -> None:
    """Worker connection (see docs/worker-protocol.md). Authenticate in the first frame."""
    await ws.accept()
    state: AppState = ws.app.state.ymera
    await Session(state, ws).run()

"""`/api/v1/chat/sessions/{id}/ws`: a session live (docs/chat.md).

The edge of the chat protocol: it authenticates (a token in the first frame, or
in the `bearer.<token>` subprotocol next to `ymera.chat.v1`; never in the URL),
joins the session's room in the replica's hub, and handles each client frame in
its own unit of work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ymera.auth.dependencies import authenticate
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.chat import service
from ymera.chat.hub import (
    CLOSE_BAD_HELLO,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_PING_TIMEOUT,
    CLOSE_UNAUTHORIZED,
    ChatConnection,
    ChatHub,
)
from ymera.chat.schemas import MessageCreate
from ymera.errors import YmeraError
from ymera.kit import jsonx
from ymera.state import AppState
from ymera.tasks.schemas import RetryPolicy

log = structlog.get_logger("ymera.chat.ws")
router = APIRouter()

SUBPROTOCOL = "ymera.chat.v1"
BEARER_PREFIX = "bearer."
HELLO_TIMEOUT = 10.0
MAX_FRAME = 2 * 1024 * 1024
TYPING_EVERY = 1.0  # seconds: a client's typing frames are forwarded at most this often


def _subprotocol_token(ws: WebSocket) -> tuple[str | None, str | None]:
    """(the subprotocol to answer with, the token offered in one)."""
    offered = [str(p) for p in ws.scope.get("subprotocols") or []]
    token = next((p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)), None)
    return (SUBPROTOCOL if SUBPROTOCOL in offered else None), token or None


def default_retry(state: AppState) -> RetryPolicy:
    cfg = state.settings.tasks
    return RetryPolicy(
        max_attempts=cfg.max_attempts,
        initial=cfg.retry_initial,
        factor=cfg.retry_factor,
        cap=cfg.retry_cap,
    )


class _Sink:
    """The socket as the hub writes to it: text frames go straight to the ASGI
    ``send`` (past Starlette's per-call state checks: the hub sends thousands of
    frames a second, and only once the socket is accepted); closing goes through
    Starlette."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._send = ws._send

    async def send_text(self, data: str) -> None:
        await self._send({"type": "websocket.send", "text": data})

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self._ws.close(code=code, reason=reason)


class ChatSocket:
    """One client connection: handshake, then the receive loop."""

    def __init__(self, state: AppState, ws: WebSocket, session_id: str) -> None:
        self.state = state
        self.ws = ws
        self.session_id = session_id
        self.hub: ChatHub = state.extras["chat_hub"]
        self.principal: Principal | None = None
        self.conn: ChatConnection | None = None
        self._typing_at = 0.0

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason[:120])

    async def handshake(self, subprotocol_token: str | None) -> tuple[Any, int | None] | None:
        try:
            raw = await asyncio.wait_for(self.ws.receive_text(), HELLO_TIMEOUT)
            hello = json.loads(raw)
        except (TimeoutError, ValueError, KeyError):
            await self._close(CLOSE_BAD_HELLO, "expected a hello frame")
            return None
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await self._close(CLOSE_BAD_HELLO, "expected a hello frame")
            return None
        last_seq = hello.get("last_seq")
        if last_seq is not None and (
            not isinstance(last_seq, int) or isinstance(last_seq, bool) or last_seq < 0
        ):
            await self._close(CLOSE_BAD_HELLO, "last_seq must be a non-negative integer")
            return None
        token = hello.get("token") or subprotocol_token
        if not isinstance(token, str) or not token:
            await self._close(CLOSE_UNAUTHORIZED, "a token is required")
            return None
        try:
            principal = await authenticate(self.state, token)
        except YmeraError as exc:
            await self._close(CLOSE_UNAUTHORIZED, exc.message)
            return None
        if not principal.can(Permission.CHAT_READ):
            await self._close(CLOSE_FORBIDDEN, "missing permission chat:read")
            return None
        try:
            async with self.state.db.transaction(readonly=True) as session:
                start = await service.open_stream(
                    session, principal=principal, session_id=self.session_id
                )
        except YmeraError as exc:
            await self._close(CLOSE_NOT_FOUND, exc.message)
            return None
        self.principal = principal
        return start, last_seq

    async def run(self) -> None:
        chosen, token = _subprotocol_token(self.ws)
        await self.ws.accept(subprotocol=chosen)
        opened = await self.handshake(token)
        if opened is None:
            return
        start, last_seq = opened
        settings = self.state.settings.chat
        conn = ChatConnection(
            session_id=self.session_id,
            participant_id=start.participant_id,
            sink=_Sink(self.ws),
            queue_size=settings.send_queue_size,
        )
        self.conn = conn
        keepalive = None
        try:
            try:
                await self.hub.join(conn, start, last_seq)
            except RuntimeError:
                await conn.close(1011, "the session could not be opened; reconnect")
                raise
            keepalive = asyncio.create_task(self._keepalive(conn), name=f"chat-ping-{conn.id}")
            while not conn.closed:
                raw = await self.ws.receive_text()
                conn.last_heard = asyncio.get_running_loop().time()
                if len(raw) > MAX_FRAME:
                    conn.offer(_error("frame_too_large", f"frames are at most {MAX_FRAME} bytes"))
                    continue
                await self.handle(raw)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if keepalive is not None:
                keepalive.cancel()
            await self.hub.leave(conn)
            await conn.close(1000)

    async def _keepalive(self, conn: ChatConnection) -> None:
        settings = self.state.settings.chat
        loop = asyncio.get_running_loop()
        while not conn.closed:
            await asyncio.sleep(settings.ping_interval)
            sent = loop.time()
            conn.offer(jsonx.dumps({"type": "ping", "t": time.time()}))
            await asyncio.sleep(settings.ping_timeout)
            if conn.last_heard < sent and not conn.closed:
                log.info("chat_ping_timeout", conn=conn.id)
                await conn.close(CLOSE_PING_TIMEOUT, "no pong")
                return

    async def handle(self, raw: str) -> None:
        assert self.conn is not None
        try:
            frame = jsonx.loads(raw)
        except ValueError:
            self.conn.offer(_error("bad_frame", "not JSON"))
            return
        if not isinstance(frame, dict):
            self.conn.offer(_error("bad_frame", "a frame is a JSON object"))
            return
        kind = frame.get("type")
        if kind == "message":
            await self.on_message(frame)
        elif kind == "typing":
            now = time.monotonic()
            if now - self._typing_at >= TYPING_EVERY:
                self._typing_at = now
                await self.hub.typing(self.conn)
        elif kind == "ping":
            self.conn.offer(jsonx.dumps({"type": "pong", "t": frame.get("t")}))
        elif kind == "pong":
            return
        else:
            self.conn.offer(_error("bad_frame", f"unknown frame type {kind!r}"))

    async def on_message(self, frame: dict[str, Any]) -> None:
        assert self.conn is not None
        assert self.principal is not None
        client_id = frame.get("client_id")
        client_id = str(client_id)[:100] if client_id is not None else None
        if not self.principal.can(Permission.CHAT_WRITE):
            self.conn.offer(_error("missing_permission", "chat:write needed", client_id))
            return
        try:
            body = MessageCreate.model_validate(
                {k: v for k, v in frame.items() if k in ("content", "file_ids", "to")}
            )
        except ValueError as exc:
            self.conn.offer(_error("validation_error", str(exc)[:500], client_id))
            return
        settings = self.state.settings
        try:
            async with self.state.db.transaction() as session:
                message = await service.post_message(
                    session,
                    principal=self.principal,
                    session_id=self.session_id,
                    content=body.content,
                    file_ids=body.file_ids,
                    to=body.to,
                    now=self.state.clock.now(),
                    default_retry=default_retry(self.state),
                    history=settings.chat.history_for_agents,
                    max_chars=settings.chat.max_message_chars,
                )
        except YmeraError as exc:
            self.conn.offer(_error(exc.code, exc.message, client_id))
            return
        self.conn.offer(
            jsonx.dumps(
                {
                    "type": "ack",
                    "client_id": client_id,
                    "id": message.id,
                    "seq": message.seq,
                    "task_id": message.task_id,
                }
            )
        )


def _error(code: str, message: str, client_id: str | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if client_id is not None:
        frame["client_id"] = client_id
    return jsonx.dumps(frame)


@router.websocket("/api/v1/chat/sessions/{session_id}/ws")
async def chat_socket(ws: WebSocket, session_id: str) -> None:
    """A chat session live (docs/chat.md): authenticate in the first frame."""
    state: AppState = ws.app.state.ymera
    await ChatSocket(state, ws, session_id[:36]).run()

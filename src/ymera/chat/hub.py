"""This replica's live chat connections, grouped in rooms (one per session).

A room exists while the replica has a connection to its session. It holds one
bus subscription to the session's channel and forwards what arrives to its
connections, in ``seq`` order and without gaps: a message that arrives twice is
dropped, one that arrives after a gap (a publication lost or overtaken, a bus
that lagged) first makes the room read the missing ones from the database, and
an idle room checks the database every ``chat.resync_interval`` seconds. Since a
message's seq is taken under the session row's lock, seq N+1 never commits
before seq N, so what the database holds up to a seq is final.

A connection first gets what it missed (``recovered: true``, read from the
database after it joined the room), then the live messages the room forwarded
meanwhile and since, minus those it already had. Every connection has a bounded
send queue drained by one sender task: a client that reads slower than the
session talks fills it and is cut with close code 4408.

Frames that are not messages (typing, presence, streamed agent output, session
changes) are forwarded as they come, without numbers and without catch-up.

Presence: each room knows who is connected here and, per other replica, who is
connected there. Every replica announces its rooms' participants every third of
``chat.presence_ttl`` (``presence_here``); a room shows the difference each
announcement makes, and a replica not heard from for ``presence_ttl`` (it
crashed, or lost the bus) has its participants shown offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Coroutine, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from ymera.chat import service
from ymera.kit import jsonx
from ymera.state import AppState

log = structlog.get_logger("ymera.chat")

CLOSE_GOING_AWAY = 1001
CLOSE_BAD_HELLO = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_SLOW_CONSUMER = 4408
CLOSE_PING_TIMEOUT = 4410
RESYNC_PAGE = 500
TASK_LIMIT = 10_000  # chat tasks a room follows for streamed output


class FrameSink(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class _Resumed:
    """A send started in the caller that had to wait: awaiting this (in the sender
    task) waits for what it waits for and runs it to its end."""

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self.coro = coro
        self.waiting = waiting

    def __await__(self) -> Generator[Any, None, None]:
        waiting = self.waiting
        while True:
            try:
                yield waiting
            except BaseException as exc:  # cancelled: the send is told, and ends
                try:
                    waiting = self.coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                waiting = self.coro.send(None)
            except StopIteration:
                return


@dataclass(eq=False)
class ChatConnection:
    """One client's WebSocket to one session."""

    session_id: str
    participant_id: str
    sink: FrameSink
    queue_size: int = 1000
    last_seq: int = 0  # the last message seq queued for this client
    ready: bool = False  # caught up: live messages go straight to the queue
    # Every message up to this seq reaches the client through its catch-up (or
    # its reload): live ones up to it are not held while it catches up.
    covered_seq: int = 0
    closed: bool = False
    close_code: int | None = None
    id: str = field(default_factory=lambda: secrets.token_hex(6))

    def __post_init__(self) -> None:
        self._queue: asyncio.Queue[str | _Resumed | None] = asyncio.Queue(maxsize=self.queue_size)
        self._pending: list[tuple[int, str]] = []
        self._sender: asyncio.Task[None] | None = None
        self._busy = False  # the sender is sending (eager sends would overtake it)
        self.last_heard = asyncio.get_running_loop().time()

    def start(self) -> None:
        self._sender = asyncio.create_task(self._send_loop(), name=f"chat-send-{self.id}")

    def offer(self, text: str) -> None:
        """Send a frame, or queue it behind those not sent yet; a full queue cuts the
        connection (4408)."""
        if self.closed:
            return
        if not self._busy and self._queue.empty() and self._sender is not None:
            self._send_eagerly(text)
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("chat_client_too_slow", session=self.session_id, conn=self.id)
            self._cut(CLOSE_SLOW_CONSUMER, "send queue full: the client reads too slowly")

    def offer_message(self, seq: int, text: str) -> None:
        """A live message: held until the connection caught up, dropped when it
        already has it."""
        if self.closed:
            return
        if not self.ready:
            if seq <= self.covered_seq:
                return  # the catch-up sends it
            if len(self._pending) >= self.queue_size:
                self._cut(CLOSE_SLOW_CONSUMER, "send queue full: the client reads too slowly")
                return
            self._pending.append((seq, text))
            return
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        self.offer(text)

    async def send_now(self, text: str) -> None:
        """Queue a frame, waiting for room (the catch-up, before going live)."""
        if not self.closed:
            await self._queue.put(text)

    async def go_live(self) -> None:
        """Caught up: send the live messages held meanwhile (those not sent yet),
        waiting for room as the catch-up does (its frames may still fill the
        queue: that is no slow client), then go live."""
        while self._pending and not self.closed:
            pending, self._pending = self._pending, []
            for seq, text in pending:
                if seq > self.last_seq:
                    self.last_seq = seq
                    await self.send_now(text)
        self.ready = True  # no await since _pending was last seen empty

    def _send_eagerly(self, text: str) -> None:
        """Run the send right here, in the caller (a room forwarding to hundreds of
        connections): a writable socket takes the frame at once, without waking a
        task per connection. A send that has to wait (the socket's buffer is full)
        goes on in the sender task, ahead of anything queued after it."""
        coro = self.sink.send_text(text)
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the socket is gone; the receive side notices too
            log.info("chat_send_stopped", conn=self.id, error=repr(exc))
            self.closed = True
            return
        self._queue.put_nowait(_Resumed(coro, waiting))

    async def _send_loop(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                self._busy = True
                if isinstance(item, _Resumed):
                    await item
                else:
                    await self.sink.send_text(item)
                self._busy = False
        except Exception as exc:  # the socket is gone; the receive side notices too
            log.info("chat_send_stopped", conn=self.id, error=repr(exc))
            self.closed = True

    def _cut(self, code: int, reason: str) -> None:
        asyncio.get_running_loop().create_task(self.close(code, reason))
        self.closed = True
        self.close_code = code

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Stop sending and close the socket with ``code``."""
        already = self.close_code is not None
        self.closed = True
        if already and self._sender is None:
            return
        self.close_code = self.close_code or code
        sender, self._sender = self._sender, None
        if sender is not None and code != CLOSE_SLOW_CONSUMER:
            # Let what is queued go out first (a bounded wait), then close.
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(sender), 2)
        if sender is not None and not sender.done():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sink.close(code=self.close_code, reason=reason[:120]), 5)


class Room:
    """This replica's connections to one session and their bus subscription."""

    def __init__(self, hub: ChatHub, session_id: str) -> None:
        self.hub = hub
        self.session_id = session_id
        self.conns: set[ChatConnection] = set()
        self.position = 0  # the last seq forwarded (every earlier one was, too)
        self.tasks: dict[str, str] = {}  # open chat task -> the message that asked
        self.local: dict[str, int] = {}  # participant -> connections here
        self.remote: dict[str, set[str]] = {}  # replica -> participants online there
        self.heard: dict[str, float] = {}  # replica -> when it last spoke (loop time)
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None
        self.pump = asyncio.create_task(self._pump(), name=f"chat-room-{session_id}")

    @property
    def channel(self) -> str:
        return service.channel(self.session_id)

    def online(self) -> list[str]:
        everyone = set(self.local)
        for participants in self.remote.values():
            everyone |= participants
        return sorted(everyone)

    async def _pump(self) -> None:
        state = self.hub.state
        interval = state.settings.chat.resync_interval
        try:
            async with state.bus.subscribe(self.channel, maxsize=100_000) as sub:
                async with state.db.transaction(readonly=True) as session:
                    latest = await service.latest_seq(session, session_id=self.session_id)
                self.position = latest or 0
                self.ready.set()
                await self.hub.publish(
                    self.channel, {"type": "presence_sync", "replica": self.hub.replica}
                )
                while True:
                    message = await sub.get(timeout=interval)
                    if message is None:
                        if sub.closed:
                            return
                        sub.clear_lag()  # lagged, or idle: the database says what was missed
                        await self._catch_up()
                        continue
                    await self._handle(message.data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("chat_room_failed", session=self.session_id, error=repr(exc))
            self.failed = exc
            self.ready.set()
            for conn in list(self.conns):
                await conn.close(1011, "chat room failed")

    async def _catch_up(self, upto: int | None = None) -> None:
        """Forward the messages after ``position`` (up to ``upto``) from the database."""
        state = self.hub.state
        while upto is None or self.position < upto:
            async with state.db.transaction(readonly=True) as session:
                rows = await service.messages_after(
                    session, session_id=self.session_id, after_seq=self.position, limit=RESYNC_PAGE
                )
            for row in rows:
                if upto is not None and row.seq > upto:
                    return
                self._forward_message(service.message_frame(row))
            if len(rows) < RESYNC_PAGE:
                return

    async def _handle(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message":
            seq = data.get("seq")
            if not isinstance(seq, int) or seq <= self.position:
                return  # already forwarded
            if seq > self.position + 1:
                await self._catch_up(upto=seq - 1)
                if seq <= self.position:
                    return
            self._forward_message(data)
        elif kind == "presence_sync":
            if data.get("replica") != self.hub.replica and self.local:
                await self.hub.publish(self.channel, self.presence_here())
        elif kind == "presence_here":
            replica = str(data.get("replica"))
            if replica != self.hub.replica:
                self._announced(replica, set(data.get("online") or []))
        elif kind == "presence":
            self._presence(data)
        elif kind == "typing":
            text = jsonx.dumps(data)
            for conn in list(self.conns):
                if conn.participant_id != data.get("participant_id"):
                    conn.offer(text)
        elif kind == "participants":
            removed = data.get("removed")
            text = jsonx.dumps(data)
            for conn in list(self.conns):
                if removed and conn.participant_id == removed:
                    await conn.close(CLOSE_FORBIDDEN, "removed from the session")
                else:
                    conn.offer(text)
        else:  # archived, and whatever else the session announces
            self.broadcast(jsonx.dumps(data))

    def _presence(self, data: dict[str, Any]) -> None:
        replica = str(data.get("replica"))
        if replica != self.hub.replica:
            self.heard[replica] = asyncio.get_running_loop().time()
            who = str(data.get("participant_id"))
            online = self.remote.setdefault(replica, set())
            if data.get("status") == "online":
                online.add(who)
            else:
                online.discard(who)
        out = {k: v for k, v in data.items() if k != "replica"}
        self.broadcast(jsonx.dumps(out))

    def presence_here(self) -> dict[str, Any]:
        return {"type": "presence_here", "replica": self.hub.replica, "online": sorted(self.local)}

    def _announced(self, replica: str, online: set[str]) -> None:
        """Another replica said who is connected to it: show what that changes
        (a presence frame lost on the bus, or a room that started after them)."""
        self.heard[replica] = asyncio.get_running_loop().time()
        before = set(self.online())
        self.remote[replica] = online
        self._show_changes(before)

    def expire(self, now: float, ttl: float) -> None:
        """Forget the replicas not heard from for ``ttl`` seconds: their
        participants go offline unless connected elsewhere."""
        lost = [r for r, at in self.heard.items() if now - at > ttl]
        if not lost:
            return
        before = set(self.online())
        for replica in lost:
            del self.heard[replica]
            gone = self.remote.pop(replica, set())
            log.info("chat_replica_lost", session=self.session_id, replica=replica, gone=len(gone))
        self._show_changes(before)

    def _show_changes(self, before: set[str]) -> None:
        after = set(self.online())
        for who, status in [(w, "offline") for w in sorted(before - after)] + [
            (w, "online") for w in sorted(after - before)
        ]:
            frame = {"type": "presence", "participant_id": who, "status": status}
            self.broadcast(jsonx.dumps(frame))

    def _forward_message(self, frame: dict[str, Any]) -> None:
        seq = int(frame["seq"])
        self.position = seq
        body = frame.get("message") or {}
        task_id = body.get("task_id")
        if task_id:
            if body.get("kind") == "message":
                if len(self.tasks) < TASK_LIMIT:
                    self.tasks[task_id] = str(body.get("id"))
                    self.hub.follow_task(task_id, self.session_id)
            else:
                self.tasks.pop(task_id, None)
                self.hub.unfollow_task(task_id)
        text = jsonx.dumps({**frame, "recovered": False})
        for conn in list(self.conns):
            conn.offer_message(seq, text)

    def broadcast(self, text: str) -> None:
        for conn in list(self.conns):
            conn.offer(text)

    def close(self) -> None:
        self.pump.cancel()
        for task_id in self.tasks:
            self.hub.unfollow_task(task_id)


class ChatHub:
    """Every room of this replica; publishes what committed units of work queued."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.replica = str(state.extras.get("replica_id") or secrets.token_hex(6))
        self.rooms: dict[str, Room] = {}
        self._task_rooms: dict[str, str] = {}  # chat task id -> session id
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._publisher: asyncio.Task[None] | None = None
        self._relay: asyncio.Task[None] | None = None
        self._presence_task: asyncio.Task[None] | None = None
        self.slow_consumers_cut = 0

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._publisher = asyncio.create_task(self._publish_loop(), name="chat-publisher")
        self._presence_task = asyncio.create_task(self._presence_loop(), name="chat-presence")

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            for conn in list(room.conns):
                await conn.close(CLOSE_GOING_AWAY, "server shutting down")
            room.close()
        self.rooms.clear()
        for task in (self._publisher, self._relay, self._presence_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        # Publish what committed before stopping (bounded: other replicas' rooms
        # catch up from the database anyway).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain_outbox(), 2)

    async def _drain_outbox(self) -> None:
        while not self._outbox.empty():
            channel, frame = self._outbox.get_nowait()
            with contextlib.suppress(Exception):
                await self.state.bus.publish(channel, frame)

    # --- publishing after commit ---------------------------------------------------------

    def on_commit(self, types: set[str], info: dict[Any, Any]) -> None:
        """A local unit of work committed: publish the frames it queued, in order."""
        for item in service.take_outgoing(info):
            self._outbox.put_nowait(item)

    async def publish(self, channel: str, frame: dict[str, Any]) -> None:
        await self.state.bus.publish(channel, frame)

    async def _presence_loop(self) -> None:
        """Announce this replica's participants in every room with some, and expire
        the replicas gone silent, every third of ``chat.presence_ttl``."""
        ttl = self.state.settings.chat.presence_ttl
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(ttl / 3)
            for room in list(self.rooms.values()):
                room.expire(loop.time(), ttl)
                if room.local:
                    try:
                        await self.publish(room.channel, room.presence_here())
                    except Exception as exc:  # the next round tries again
                        log.warning("chat_presence_failed", error=repr(exc))

    async def _publish_loop(self) -> None:
        while True:
            channel, frame = await self._outbox.get()
            try:
                await self.state.bus.publish(channel, frame)
            except Exception as exc:  # rooms catch up from the database
                log.warning("chat_publish_failed", channel=channel, error=repr(exc))

    # --- rooms ---------------------------------------------------------------------------

    async def join(
        self, conn: ChatConnection, start: service.StreamStart, resume_from: int | None
    ) -> None:
        """Put a connection in its session's room and bring it up to date: the
        welcome, what it missed since ``resume_from`` (or a `reload` frame when
        that is too much), then live."""
        room = self.rooms.get(conn.session_id)
        if room is None:
            room = self.rooms[conn.session_id] = Room(self, conn.session_id)
            self._ensure_relay()
        await room.ready.wait()
        if room.failed is not None:
            raise RuntimeError("the session's room could not start") from room.failed
        conn.start()
        room.conns.add(conn)
        for task_id, message_id in start.open_tasks.items():
            room.tasks.setdefault(task_id, message_id)
            self.follow_task(task_id, conn.session_id)
        first_here = room.local.get(conn.participant_id, 0) == 0
        room.local[conn.participant_id] = room.local.get(conn.participant_id, 0) + 1
        settings = self.state.settings.chat
        limit = settings.max_resume_gap
        async with self.state.db.transaction(readonly=True) as session:
            latest = await service.latest_seq(session, session_id=conn.session_id) or 0
            conn.covered_seq = latest
            missed = []
            if resume_from is not None and resume_from < latest:
                missed = await service.messages_after(
                    session, session_id=conn.session_id, after_seq=resume_from, limit=limit + 1
                )
        await conn.send_now(
            jsonx.dumps(
                {
                    "type": "welcome",
                    "session_id": conn.session_id,
                    "participant_id": conn.participant_id,
                    "connection_id": conn.id,
                    "last_seq": latest,
                    "resumed_from": resume_from,
                    "online": sorted(set(room.online()) | {conn.participant_id}),
                    "ping_interval": settings.ping_interval,
                }
            )
        )
        if resume_from is None or resume_from >= latest:
            conn.last_seq = latest if resume_from is None else max(resume_from, latest)
        elif len(missed) > limit:
            await conn.send_now(
                jsonx.dumps(
                    {
                        "type": "reload",
                        "reason": "gap_too_large",
                        "from_seq": resume_from,
                        "last_seq": latest,
                        "max_resume_gap": limit,
                    }
                )
            )
            conn.last_seq = latest
        else:
            for row in missed:
                frame = service.message_frame(row)
                await conn.send_now(jsonx.dumps({**frame, "recovered": True}))
                conn.last_seq = row.seq
        await conn.go_live()
        if first_here:
            await self.publish(
                room.channel,
                {
                    "type": "presence",
                    "participant_id": conn.participant_id,
                    "status": "online",
                    "replica": self.replica,
                },
            )

    async def leave(self, conn: ChatConnection) -> None:
        room = self.rooms.get(conn.session_id)
        if room is None or conn not in room.conns:
            return
        room.conns.discard(conn)
        left = room.local.get(conn.participant_id, 1) - 1
        if left <= 0:
            room.local.pop(conn.participant_id, None)
            await self.publish(
                room.channel,
                {
                    "type": "presence",
                    "participant_id": conn.participant_id,
                    "status": "offline",
                    "replica": self.replica,
                },
            )
        else:
            room.local[conn.participant_id] = left
        if not room.conns:
            del self.rooms[conn.session_id]
            room.close()
            if not self.rooms and self._relay is not None:
                self._relay.cancel()
                self._relay = None

    async def typing(self, conn: ChatConnection) -> None:
        await self.publish(
            service.channel(conn.session_id),
            {
                "type": "typing",
                "session_id": conn.session_id,
                "participant_id": conn.participant_id,
            },
        )

    def connections(self) -> Iterable[ChatConnection]:
        for room in self.rooms.values():
            yield from room.conns

    # --- streamed agent output -----------------------------------------------------------

    def follow_task(self, task_id: str, session_id: str) -> None:
        self._task_rooms[task_id] = session_id

    def unfollow_task(self, task_id: str) -> None:
        self._task_rooms.pop(task_id, None)

    def _ensure_relay(self) -> None:
        if self._relay is None or self._relay.done():
            self._relay = asyncio.create_task(self._relay_output(), name="chat-output-relay")

    async def _relay_output(self) -> None:
        """Chunks the agents stream while answering (``ctx.stream``), to the rooms of
        their sessions: not stored, not numbered (the reply is, once complete)."""
        from ymera.agents.connect import TASK_OUTPUT_CHANNEL

        async with self.state.bus.subscribe(TASK_OUTPUT_CHANNEL) as sub:
            async for message in sub:
                data = message.data
                if data.get("kind") != "output":
                    continue
                task_id = data.get("task_id")
                session_id = self._task_rooms.get(task_id) if isinstance(task_id, str) else None
                room = self.rooms.get(session_id) if session_id else None
                if room is None:
                    continue
                room.broadcast(
                    jsonx.dumps(
                        {
                            "type": "chunk",
                            "task_id": task_id,
                            "reply_to": room.tasks.get(str(task_id)),
                            "index": data.get("seq"),
                            "chunk": data.get("chunk", ""),
                        }
                    )
                )

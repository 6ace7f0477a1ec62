"""HTTP push agents: YMERA POSTs each task to ``{endpoint_url}/tasks``.

The agent answers with the result (200, ``{"output": {...}}``), or accepts the
task (202) and later calls back ``POST /api/v1/tasks/{id}/callback`` with the
single-use token it was given. Deliveries are retried with backoff (tenacity)
on connection errors, 408, 429 and 5xx; every agent has a circuit breaker
(closed / open / half-open) whose state shows in the agent's status (ERROR
while open) and in events. Contract: docs/http-agents.md.

On shutdown the pusher claims nothing more, gives the pushes in flight until a
deadline, then stops those still waiting for their agent and hands their tasks
back (:meth:`Pusher.hand_back`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ymera.agents import service as agents_service
from ymera.errors import NotFound
from ymera.kit.aio import wait_any
from ymera.models.agents import Agent
from ymera.resilience.breaker import BreakerState, CircuitBreaker
from ymera.state import AppState
from ymera.tasks import claims, leases, repository, service
from ymera.tasks.routing import AgentSlot, LeastLoaded, Router

log = structlog.get_logger("ymera.push")

CALLBACK_PURPOSE = "task-callback"
CALLBACK_PREFIX = "ycb_"
ASYNC_LEASE_SECONDS = 3600.0
IDLE_RECHECK = 0.25  # seconds, monotonic
SHUTDOWN_REASON = "server shutting down"


class _Retryable(Exception):
    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


def callback_token(state: AppState, ref: service.LeaseRef) -> str:
    message = f"{ref.task_id}:{ref.attempt}:{ref.lease_token}"
    return CALLBACK_PREFIX + state.codec.sign(CALLBACK_PURPOSE, message)


def check_callback_token(state: AppState, ref: service.LeaseRef, token: str) -> bool:
    if not token.startswith(CALLBACK_PREFIX):
        return False
    message = f"{ref.task_id}:{ref.attempt}:{ref.lease_token}"
    return state.codec.verify(CALLBACK_PURPOSE, message, token[len(CALLBACK_PREFIX) :])


class Pusher:
    """Claims tasks for http agents and delivers them (every replica runs one)."""

    def __init__(self, state: AppState, router: Router | None = None) -> None:
        self.state = state
        self.router = router or LeastLoaded()
        self.signal = asyncio.Event()
        self.breakers: dict[str, CircuitBreaker] = {}
        self.inflight: set[asyncio.Task[None]] = set()
        # Deliveries waiting for their agent's answer (safe to stop): job -> (lease, agent).
        self._posting: dict[asyncio.Task[Any], tuple[service.LeaseRef, str]] = {}
        self._client: httpx.AsyncClient | None = None
        self._idle_until: float | None = None

    def wake(self) -> None:
        self.signal.set()

    def breaker(self, agent_id: str) -> CircuitBreaker:
        cfg = self.state.settings.push
        if agent_id not in self.breakers:
            self.breakers[agent_id] = CircuitBreaker(
                failure_threshold=cfg.breaker_failures,
                open_seconds=cfg.breaker_open_seconds,
                clock=self.state.clock,
            )
        return self.breakers[agent_id]

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.state.settings.push.timeout)
        return self._client

    def send_cancel(self, endpoint: str, *, task_id: str, attempt: int, reason: str) -> None:
        """Tell an http agent that a task it accepted was cancelled: one POST to
        ``{endpoint}/tasks/{task_id}/cancel``, best effort (its later callback is
        refused anyway)."""

        async def post() -> None:
            url = f"{endpoint.rstrip('/')}/tasks/{task_id}/cancel"
            body = {"task_id": task_id, "attempt": attempt, "reason": reason}
            try:
                await self.client.post(url, json=body, timeout=5.0)
            except httpx.HTTPError as exc:
                log.info("push_cancel_undelivered", task_id=task_id, error=repr(exc)[:200])

        job = asyncio.get_running_loop().create_task(post(), name=f"push-cancel-{task_id}")
        self.inflight.add(job)
        job.add_done_callback(self.inflight.discard)

    async def close(self) -> None:
        for job in list(self.inflight):
            job.cancel()
        if self._client is not None:
            await self._client.aclose()

    def _slot(self, agent: Agent) -> AgentSlot | None:
        breaker = self.breaker(agent.id)
        state = breaker.current()
        cap = agent.max_concurrency
        if state == BreakerState.OPEN:
            return None
        if state == BreakerState.HALF_OPEN:
            if breaker.probes_in_flight >= breaker.half_open_probes:
                return None
            cap = min(cap, agent.current_load + 1)
        return AgentSlot(
            agent_id=agent.id,
            name=agent.name,
            capabilities={
                str(c["name"]): float(c.get("proficiency", 0.5)) for c in agent.capabilities
            },
            load=agent.current_load,
            max_concurrency=cap,
            agent_type=agent.type,
        )

    async def dispatch_once(self) -> int:
        if self.state.extras["draining"].is_set():  # shutting down: claim no new work
            return 0
        cfg = self.state.settings
        now = self.state.clock.now()
        # Read first (no writer taken): most commits find no push agent or no task.
        # Without push agents, look again at most every quarter second.
        if self._idle_until is not None and time.monotonic() < self._idle_until:
            return 0
        async with self.state.db.transaction(readonly=True) as session:
            candidates = await agents_service.http_agents(session)
            if not candidates:
                self._idle_until = time.monotonic() + IDLE_RECHECK
                return 0
            self._idle_until = None
            if not any(self._slot(a) for a in candidates):
                return 0
            if not await claims.has_pending(session, now=now):
                return 0
        async with self.state.db.transaction() as session:
            agents = {a.id: a for a in await agents_service.http_agents(session)}
            slots = [s for s in (self._slot(a) for a in agents.values()) if s is not None]
            if not slots:
                return 0
            lease = max(
                cfg.tasks.lease_seconds,
                cfg.push.timeout * (cfg.push.retries + 1) + 5 * (cfg.push.retries + 1),
            )
            assignments = await claims.claim(
                session,
                agents=slots,
                router=self.router,
                now=now,
                lease_seconds=lease,
                limit=cfg.tasks.claim_batch,
            )
            touched = sorted({a.agent_id for a in assignments})
            if touched:
                await agents_service.sync_status_with_load(session, agent_ids=touched, now=now)
            targets = {a.agent_id: str(agents[a.agent_id].endpoint_url) for a in assignments}
        for assignment in assignments:
            job = asyncio.create_task(self.deliver(assignment, targets[assignment.agent_id]))
            self.inflight.add(job)
            job.add_done_callback(self.inflight.discard)
        return len(assignments)

    async def _post(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        cfg = self.state.settings.push
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(cfg.retries + 1),
            wait=wait_exponential_jitter(
                multiplier=cfg.retry_initial, max=5, jitter=cfg.retry_initial
            ),
            retry=retry_if_exception_type((_Retryable, httpx.TransportError)),
            reraise=True,
        ):
            with attempt:
                resp = await self.client.post(url, json=payload)
                if resp.status_code in (408, 429) or resp.status_code >= 500:
                    raise _Retryable(f"agent answered {resp.status_code}", resp)
                return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_stoppable(
        self, ref: service.LeaseRef, agent_id: str, url: str, payload: dict[str, Any]
    ) -> httpx.Response:
        """The POST, registered so that :meth:`hand_back` may stop it (nothing is
        written while it waits, so stopping it leaves the lease to hand back)."""
        job = asyncio.current_task()
        assert job is not None
        self._posting[job] = (ref, agent_id)
        try:
            return await self._post(url, payload)
        finally:
            del self._posting[job]

    async def hand_back(self, *, stop_at: float, finish_by: float) -> int:
        """Shutdown, once claims have stopped: let the pushes in flight finish until
        ``stop_at`` (event-loop time); then stop those still waiting for their agent
        and hand their tasks back in one transaction (re-queued at once, the attempt
        not counted), so another replica, or this one restarted, runs them without
        waiting for the lease to expire. Deliveries already recording their outcome
        get until ``finish_by``. Returns how many tasks were handed back."""
        loop = asyncio.get_running_loop()
        while self.inflight and (remaining := stop_at - loop.time()) > 0:
            await asyncio.wait(set(self.inflight), timeout=remaining)
        stopping = dict(self._posting)
        for job in stopping:
            job.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        released = await self._release(list(stopping.values())) if stopping else 0
        if self.inflight and (remaining := finish_by - loop.time()) > 0:
            await asyncio.wait(set(self.inflight), timeout=remaining)
        return released

    async def _release(self, held: list[tuple[service.LeaseRef, str]]) -> int:
        now = self.state.clock.now()
        released: list[str] = []
        try:
            async with self.state.db.transaction() as session:
                for ref, _ in held:
                    try:
                        await leases.release(session, ref=ref, now=now, reason=SHUTDOWN_REASON)
                    except (service.StaleLease, NotFound):
                        continue  # finished or re-queued meanwhile
                    released.append(ref.task_id)
                agent_ids = sorted({agent_id for _, agent_id in held})
                await agents_service.sync_status_with_load(session, agent_ids=agent_ids, now=now)
        except Exception as exc:  # the leases expire and the reaper re-queues the tasks
            log.warning("push_hand_back_failed", tasks=len(held), error=repr(exc))
            return 0
        self._count("handed_back", len(released))
        log.info("push_handed_back", tasks=released)
        return len(released)

    async def deliver(self, assignment: claims.Assignment, endpoint: str) -> None:
        task = assignment.task
        assert task.lease_token is not None
        ref = service.LeaseRef(task.id, task.attempt, task.lease_token)
        breaker = self.breaker(assignment.agent_id)
        if not breaker.allow():
            await self._report(ref, "release", reason="circuit open")
            return
        payload = {
            "task_id": task.id,
            "attempt": task.attempt,
            "type": task.type,
            "input": task.input,
            "file_ids": task.file_ids,
            "deadline": task.deadline.isoformat() if task.deadline else None,
            "timeout": task.timeout_seconds,
            "workspace_id": task.workspace_id,
            "workspace_mode": task.workspace_mode,
            "callback_url": f"/api/v1/tasks/{task.id}/callback",
            "callback_token": callback_token(self.state, ref),
        }
        url = endpoint.rstrip("/") + "/tasks"
        try:
            resp = await self._post_stoppable(ref, assignment.agent_id, url, payload)
        except (_Retryable, httpx.HTTPError) as exc:
            self._count("failed")
            await self._breaker_result(assignment.agent_id, ok=False, detail=str(exc))
            await self._report(
                ref,
                "fail",
                error={"message": f"delivery failed: {exc}"[:500], "type": "delivery"},
                retryable=True,
            )
            return
        self._count("accepted" if resp.status_code == 202 else str(resp.status_code // 100) + "xx")
        await self._breaker_result(assignment.agent_id, ok=True, detail="")
        if resp.status_code == 202:
            await self._report(
                ref, "accept", lease=max(ASYNC_LEASE_SECONDS, task.timeout_seconds or 0)
            )
        elif resp.is_success:
            try:
                body = resp.json()
            except ValueError:
                body = {"text": resp.text[:10_000]}
            output = body.get("output", body) if isinstance(body, dict) else {"value": body}
            await self._report(
                ref, "complete", output=output if isinstance(output, dict) else {"value": output}
            )
        else:
            await self._report(
                ref,
                "fail",
                error={
                    "message": f"agent refused the task: {resp.status_code} {resp.text[:300]}",
                    "type": "rejected",
                },
                retryable=False,
            )

    def _count(self, outcome: str, amount: int = 1) -> None:
        metrics = self.state.extras.get("metrics")
        if metrics is not None and amount:
            metrics.push_deliveries.labels(outcome).inc(amount)

    async def _breaker_result(self, agent_id: str, *, ok: bool, detail: str) -> None:
        breaker = self.breaker(agent_id)
        before = breaker.current()
        after = breaker.record_success() if ok else breaker.record_failure()
        metrics = self.state.extras.get("metrics")
        if metrics is not None:
            metrics.push_circuits_open.set(
                sum(1 for b in self.breakers.values() if b.current() == BreakerState.OPEN)
            )
        if before == after or after == BreakerState.HALF_OPEN:
            return
        async with self.state.db.transaction() as session:
            await agents_service.set_circuit_status(
                session,
                agent_id=agent_id,
                open_=after == BreakerState.OPEN,
                now=self.state.clock.now(),
                detail=detail[:200],
            )
        log.info("circuit", agent_id=agent_id, state=after.value)

    async def _report(self, ref: service.LeaseRef, action: str, **kw: Any) -> None:
        now = self.state.clock.now()
        try:
            async with self.state.db.transaction() as session:
                if action == "complete":
                    task = await leases.complete(session, ref=ref, output=kw["output"], now=now)
                elif action == "fail":
                    task = await leases.fail(
                        session, ref=ref, error=kw["error"], retryable=kw["retryable"], now=now
                    )
                elif action == "accept":
                    task = await leases.accept(session, ref=ref, now=now, lease_seconds=kw["lease"])
                else:
                    task = await leases.release(session, ref=ref, now=now, reason=kw["reason"])
                if task.agent_id:
                    await agents_service.sync_status_with_load(
                        session, agent_ids=[task.agent_id], now=now
                    )
        except service.StaleLease:
            log.info("push_report_stale", task_id=ref.task_id, action=action)
        self.wake()

    async def run(self, stop: asyncio.Event) -> None:
        poll = self.state.settings.push.poll_interval
        try:
            while not stop.is_set():
                self.signal.clear()
                try:
                    if await self.dispatch_once():
                        continue
                except Exception as exc:
                    log.warning("push_dispatch_failed", error=repr(exc))
                await wait_any(stop, self.signal, timeout=poll)
        finally:
            with contextlib.suppress(Exception):
                await self.close()


async def handle_callback(
    state: AppState,
    session: Any,
    *,
    task_id: str,
    attempt: int,
    token: str,
    succeeded: bool,
    output: dict[str, Any] | None,
    error: dict[str, Any] | None,
    retryable: bool,
) -> Any:
    """Finish a task an http agent accepted earlier (202), authenticated by its
    single-use callback token (an HMAC of task, attempt and lease)."""
    from ymera.errors import Unauthorized

    task = await repository.get(session, task_id, for_update=True)
    lease = task.lease_token if task is not None else None
    if task is None or lease is None or task.attempt != attempt:
        raise Unauthorized("Invalid or already used callback token", code="invalid_callback_token")
    ref = service.LeaseRef(task_id, attempt, lease)
    if not check_callback_token(state, ref, token):
        raise Unauthorized("Invalid or already used callback token", code="invalid_callback_token")
    now = state.clock.now()
    if succeeded:
        done = await leases.complete(session, ref=ref, output=output or {}, now=now)
    else:
        done = await leases.fail(
            session,
            ref=ref,
            error={"type": "agent_error", **(error or {"message": "failed"})},
            retryable=retryable,
            now=now,
        )
    if done.agent_id:
        await agents_service.sync_status_with_load(session, agent_ids=[done.agent_id], now=now)
    return await repository.get(session, task_id)  # the whole task, as now saved

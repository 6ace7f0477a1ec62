"""FastAPI app factory: routers, middleware, error handlers and the lifespan."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ymera import __version__
from ymera.agents.connect import router as connect_router
from ymera.agents.endpoints import router as agents_router
from ymera.agents.hub import WorkerHub
from ymera.auth.cache import install_principal_cache, principal_cache_loop
from ymera.auth.dependencies import api_key_scheme
from ymera.auth.endpoints import router as auth_router
from ymera.auth.ratelimit import RateLimiter
from ymera.auth.service import bootstrap_admin
from ymera.auth.tokens import TokenCodec, resolve_secret_key
from ymera.bus import create_bus
from ymera.bus.base import EventBus
from ymera.chat.endpoints import router as chat_router
from ymera.chat.hub import ChatHub
from ymera.chat.ws import router as chat_ws_router
from ymera.code.edit_endpoints import router as edits_router
from ymera.code.endpoints import router as workspaces_router
from ymera.code.storage import WorkspaceStore
from ymera.config import Settings, get_settings
from ymera.db import migrate
from ymera.db.database import Database
from ymera.errors import COMMON_RESPONSES, PROBLEM_SCHEMA
from ymera.events.endpoints import router as events_router
from ymera.files.endpoints import router as files_router
from ymera.kit.clock import Clock, SystemClock
from ymera.knowledge import recorder as knowledge_recorder
from ymera.knowledge.endpoints import router as knowledge_router
from ymera.knowledge.semantic import Embedder
from ymera.middleware import RequestContextMiddleware, drain_signal
from ymera.monitoring.endpoints import router as monitoring_router
from ymera.monitoring.metrics import Metrics
from ymera.problems import install_handlers
from ymera.routing.endpoints import learning_router, routing_router
from ymera.routing.engine import RoutingEngine
from ymera.routing.engine import bind as bind_routing
from ymera.runtime.agent_probe import agent_metrics_loop, agent_probe_loop
from ymera.runtime.file_loops import FILE_LOOPS
from ymera.runtime.health_monitor import health_monitor_loop
from ymera.runtime.knowledge_loop import knowledge_embed_loop
from ymera.runtime.loops import DEFAULT_LOOPS, LoopFn, Runtime
from ymera.runtime.routing_loop import (
    refresh_routing,
    routing_prices_loop,
    routing_refresh_loop,
)
from ymera.runtime.task_loops import TASK_LOOPS
from ymera.state import AppState
from ymera.tasks.dispatcher import Dispatcher
from ymera.tasks.endpoints import router as tasks_router
from ymera.tasks.push import Pusher
from ymera.tasks.writer import TaskWriter
from ymera.workflows import cancels as workflow_cancels
from ymera.workflows.endpoints import runs_router as workflow_runs_router
from ymera.workflows.endpoints import workflows_router

log = structlog.get_logger("ymera.app")

AdminCallback = Callable[[str, str], None]

# Routes are matched in this order: the task engine's (the busiest) first.
API_ROUTERS = (
    tasks_router,
    auth_router,
    agents_router,
    events_router,
    workspaces_router,
    edits_router,
    files_router,
    workflows_router,
    workflow_runs_router,
    chat_router,
    routing_router,
    learning_router,
    knowledge_router,
)
DEFAULT_MAX_BODY = 10 * 1024 * 1024


def build_state(
    settings: Settings, *, clock: Clock | None = None, bus: EventBus | None = None
) -> AppState:
    db = Database(
        settings.resolved_database_url,
        echo=settings.db.echo,
        pool_size=settings.db.pool_size,
        max_overflow=settings.db.max_overflow,
        ping_idle_seconds=settings.db.ping_idle_seconds,
        sqlite_busy_timeout_ms=settings.db.sqlite_busy_timeout_ms,
        sqlite_inline=settings.db.sqlite_inline,
    )
    codec = TokenCodec(
        secret=resolve_secret_key(settings),
        algorithm=settings.auth.jwt_algorithm,
        issuer=settings.auth.issuer,
        access_ttl=settings.auth.access_token_ttl,
    )
    return AppState(
        settings=settings,
        db=db,
        bus=bus or create_bus(settings),
        codec=codec,
        limiter=RateLimiter(settings),
        clock=clock or SystemClock(),
        # Set when shutdown begins (the app's lifespan puts the app's own event here).
        extras={"draining": asyncio.Event()},
    )


def shutdown_reserve(grace: float) -> float:
    """The end of the grace period kept for handing leases back, stopping the loops,
    closing connections and exiting; pushes and requests in flight get the rest."""
    return min(1.5, grace / 3)


async def _hand_back_on_drain(draining: asyncio.Event, pusher: Pusher, grace: float) -> float:
    """Once shutdown begins (claims stop at once): give the pushes in flight most of
    the grace period, then hand back the leases they still hold. Runs alongside
    uvicorn's wait for requests in flight. Returns the deadline (event-loop time)
    of the whole shutdown."""
    await draining.wait()
    deadline = asyncio.get_running_loop().time() + grace
    reserve = shutdown_reserve(grace)
    log.info("shutting_down", grace_seconds=grace, pushes_in_flight=len(pusher.inflight))
    try:
        await pusher.hand_back(stop_at=deadline - reserve, finish_by=deadline - reserve / 2)
    except Exception as exc:  # the leases expire and the reaper re-queues the tasks
        log.warning("hand_back_failed", error=repr(exc))
    return deadline


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    migrate_on_start: bool = False,
    on_admin_created: AdminCallback | None = None,
    loops: tuple[LoopFn, ...] | None = None,
) -> FastAPI:
    """Build the app. Nothing connects until the lifespan starts."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        state = build_state(settings, clock=clock)
        draining = drain_signal(app)
        draining.clear()  # a new run of the app (tests may start one app twice)
        state.extras["draining"] = draining
        state.extras["metrics"] = metrics
        state.extras["replica_id"] = secrets.token_hex(6)
        install_principal_cache(state)
        hub = WorkerHub(
            messages_sent=metrics.worker_messages_sent, frames_sent=metrics.worker_frames_sent
        )
        routing = RoutingEngine(settings.routing, state.clock)
        bind_routing(state.db, routing)
        state.extras["routing"] = routing
        state.extras["knowledge"] = Embedder(enabled=settings.knowledge.semantic)
        knowledge_recorder.bind(state.db, settings.knowledge)
        dispatcher = Dispatcher(state, hub, router=routing)
        state.extras["hub"] = hub
        state.extras["dispatcher"] = dispatcher
        lanes = 1 if state.db.is_sqlite else settings.tasks.writer_lanes
        state.extras["writer"] = TaskWriter(state, lanes=lanes, spill=settings.tasks.writer_spill)
        pusher = Pusher(state, router=routing)
        state.extras["pusher"] = pusher
        state.db.add_event_listener(dispatcher.on_commit)
        state.db.add_commit_listener(pusher.wake)
        chat_hub = ChatHub(state)
        state.extras["chat_hub"] = chat_hub
        state.db.add_event_listener(chat_hub.on_commit)
        workflow_cancels.install(state)  # tell agents of tasks a workflow cancelled
        app.state.ymera = state
        if migrate_on_start:
            await migrate.upgrade(state.db)
        await state.bus.start()
        chat_hub.start()
        # Roll back bulk writes a crash interrupted, before any new write.
        workspaces = WorkspaceStore.from_settings(settings)
        state.extras["code"] = workspaces
        await workspaces.recover_all()
        if settings.auth.bootstrap_admin:
            await _bootstrap(state, on_admin_created)
        try:  # what the fleet learned survives a restart
            await refresh_routing(state)
        except Exception as exc:  # an unmigrated database: the loop retries
            log.warning("routing_load_failed", error=repr(exc))
        default_loops = (*DEFAULT_LOOPS, health_monitor_loop, *TASK_LOOPS)
        default_loops = (*default_loops, agent_probe_loop, agent_metrics_loop)
        default_loops = (*default_loops, principal_cache_loop, *FILE_LOOPS)
        default_loops = (*default_loops, routing_refresh_loop, routing_prices_loop)
        default_loops = (*default_loops, knowledge_embed_loop)
        runtime = Runtime(state, default_loops if loops is None else loops)
        runtime.start()
        grace = settings.server.graceful_shutdown_seconds
        handing_back = asyncio.create_task(
            _hand_back_on_drain(draining, pusher, grace), name="shutdown-hand-back"
        )
        log.info(
            "started",
            version=__version__,
            database=state.db.dialect,
            bus=state.bus.name,
        )
        try:
            yield {}
        finally:
            # `ymera serve` set it when shutdown began; set it here for other servers.
            draining.set()
            deadline = await handing_back
            # The loops get until the last quarter of the reserve (closing and exiting).
            reserve = shutdown_reserve(settings.server.graceful_shutdown_seconds)
            remaining = deadline - reserve / 4 - asyncio.get_running_loop().time()
            await runtime.shutdown(max(0.1, remaining))
            # Workers keep their tasks and reconnect (to a replica) within the lease.
            await hub.close_all()
            await chat_hub.close()
            await state.bus.close()
            knowledge_recorder.unbind(state.db)
            await state.db.dispose()
            log.info("stopped")

    app = FastAPI(
        title="YMERA",
        version=__version__,
        summary="Control plane for fleets of AI agents.",
        lifespan=lifespan,
        max_body_size=DEFAULT_MAX_BODY,
    )
    app.state.metrics = metrics
    app.state.settings = settings
    install_handlers(app)
    app.include_router(monitoring_router)
    app.include_router(connect_router)
    app.include_router(chat_ws_router)
    for router in API_ROUTERS:
        app.include_router(router, responses=COMMON_RESPONSES)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    _install_openapi(app)
    return app


async def _bootstrap(state: AppState, on_admin_created: AdminCallback | None) -> None:
    from sqlalchemy.exc import IntegrityError

    from ymera.errors import Conflict

    try:
        async with state.db.transaction() as session:
            created = await bootstrap_admin(session)
    except (IntegrityError, Conflict):
        return  # another replica created it first
    if created and on_admin_created is not None:
        on_admin_created(*created)


def _api_key_beside_bearer(schema: dict[str, Any]) -> None:
    """Every operation that takes a bearer token takes an ``X-API-Key`` header
    instead (the authentication dependency reads both: ``auth.dependencies``)."""
    bearer: dict[str, list[str]] = {"HTTPBearer": []}
    api_key: dict[str, list[str]] = {"APIKeyHeader": []}
    used = False
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            security = operation.get("security") if isinstance(operation, dict) else None
            if security and bearer in security and api_key not in security:
                security.append(api_key)
                used = True
    if used:
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["APIKeyHeader"] = api_key_scheme.model.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )


def _install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description="Errors are RFC 9457 problem+json documents with a stable `code`.",
            routes=app.routes,
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        _api_key_beside_bearer(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

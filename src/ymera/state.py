"""Process-wide components, built by the app factory and kept on ``app.state.ymera``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from ymera.auth.ratelimit import RateLimiter
from ymera.auth.tokens import TokenCodec
from ymera.bus.base import EventBus
from ymera.config import Settings
from ymera.db.database import Database
from ymera.kit.clock import Clock


@dataclass
class AppState:
    settings: Settings
    db: Database
    bus: EventBus
    codec: TokenCodec
    limiter: RateLimiter
    clock: Clock
    extras: dict[str, Any] = field(default_factory=dict)


async def get_state(request: HTTPConnection) -> AppState:
    """(async: FastAPI would run a plain function in its thread pool.)"""
    state: AppState = request.app.state.ymera
    return state


State = Annotated[AppState, Depends(get_state)]

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: HTTPConnection) -> AsyncIterator[AsyncSession]:
    """One unit of work per request: committed when the endpoint returns, rolled
    back when it raises. GET requests use a read transaction."""
    state: AppState = request.app.state.ymera
    readonly = request.scope.get("method", "GET") in _READ_METHODS
    async with state.db.transaction(readonly=readonly) as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]

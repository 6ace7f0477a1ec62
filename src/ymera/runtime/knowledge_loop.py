"""Embed the experiences recorded from finished tasks (the task engine's
transaction does not wait for a model): a pass every
``knowledge.embed_interval`` seconds, in batches, only with the semantic extra.
Idempotent: every replica may run it (a row embedded twice gets the same vector).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from ymera.knowledge import service
from ymera.knowledge.semantic import Embedder
from ymera.state import AppState

log = structlog.get_logger("ymera.knowledge")


async def embed_once(state: AppState) -> int:
    embedder: Embedder = state.extras["knowledge"]
    if not embedder.active:
        return 0
    async with state.db.transaction(readonly=True) as session:
        pending = await service.pending(session, embedder=embedder)
    if not pending:
        return 0
    async with state.db.transaction() as session:
        await service.store_embeddings(session, pending)
    return len(pending)


async def knowledge_embed_loop(state: AppState, stop: asyncio.Event) -> None:
    interval = state.settings.knowledge.embed_interval
    while not stop.is_set():
        done = 0
        try:
            done = await embed_once(state)
        except Exception as exc:  # retried on the next pass
            log.warning("knowledge_embed_failed", error=repr(exc))
        if done:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)

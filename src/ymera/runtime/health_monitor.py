"""Marks agents OFFLINE when they stop sending heartbeats (every replica runs it)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from ymera.agents import service as agents_service
from ymera.state import AppState

log = structlog.get_logger("ymera.health")

AGENT_OFFLINE_CHANNEL = "agents.offline"


async def health_monitor_loop(state: AppState, stop: asyncio.Event) -> None:
    cfg = state.settings.agents
    while not stop.is_set():
        try:
            async with state.db.transaction() as session:
                gone = await agents_service.mark_silent_offline(
                    session, now=state.clock.now(), heartbeat_timeout=cfg.heartbeat_timeout
                )
                gone_ids = [a.id for a in gone]
            for agent_id in gone_ids:
                # The task engine listens here to hand the agent's leases back.
                await state.bus.publish(AGENT_OFFLINE_CHANNEL, {"agent_id": agent_id})
            if gone_ids:
                log.info("agents_offline", count=len(gone_ids), agents=gone_ids[:20])
        except Exception as exc:
            log.warning("health_monitor_failed", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), cfg.monitor_interval)

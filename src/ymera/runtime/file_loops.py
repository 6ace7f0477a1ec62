"""Files API background loop: delete temporary files once they expire. Every
replica runs it; rows are taken with SKIP LOCKED on PostgreSQL and deleted only
if still there, so two sweepers never delete (or announce) a file twice."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from ymera.files import service as files_service
from ymera.state import AppState

log = structlog.get_logger("ymera.files.sweeper")

SWEEP_BATCH = 200


async def sweep_once(state: AppState, *, batch: int = SWEEP_BATCH) -> int:
    """Delete every file expired by now (rows, then blobs), in batches; how many."""
    storage = files_service.storage_of(state)
    total = 0
    while True:
        async with state.db.transaction() as session:
            files = await files_service.delete_expired(session, now=state.clock.now(), limit=batch)
        # The rows' deletion is committed: nothing can reach these blobs any more.
        for file in files:
            try:
                await storage.delete(file.storage_key)  # already gone: fine
            except Exception as exc:
                log.warning("expired_blob_delete_failed", file_id=file.id, error=repr(exc))
        total += len(files)
        if len(files) < batch:
            return total


async def file_sweeper_loop(state: AppState, stop: asyncio.Event) -> None:
    """Every `YMERA_FILES__SWEEP_INTERVAL` seconds, delete expired temporary files."""
    interval = state.settings.files.sweep_interval
    while not stop.is_set():
        try:
            count = await sweep_once(state)
            if count:
                log.info("files_expired", count=count)
        except Exception as exc:
            log.warning("file_sweep_failed", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


FILE_LOOPS = (file_sweeper_loop,)

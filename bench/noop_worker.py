"""A worker whose handler does nothing (for the dispatch benchmark).

YMERA_URL=... YMERA_API_KEY=... python -m bench.noop_worker [concurrency]
"""

from __future__ import annotations

import sys
from typing import Any

from ymera.worker import TaskContext, Worker

worker = Worker(concurrency=int(sys.argv[1]) if len(sys.argv) > 1 else 64)


@worker.handler("noop")
async def noop(ctx: TaskContext) -> dict[str, Any]:
    return {}


if __name__ == "__main__":
    worker.run()

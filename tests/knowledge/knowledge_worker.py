"""A worker whose handler reads the knowledge base before working and adds to it
after, run as ``ymera worker run tests.knowledge.knowledge_worker:worker``."""

from __future__ import annotations

from typing import Any

from ymera.worker import KnowledgeError, TaskContext, Worker

worker = Worker(concurrency=1, reconnect_base=0.05, reconnect_cap=0.5)


@worker.handler("consult")
async def consult(ctx: TaskContext) -> dict[str, Any]:
    similar = await ctx.knowledge.similar()
    found = await ctx.knowledge.search(ctx.input["q"])
    added = await ctx.knowledge.add(
        f"consulted {len(similar)} experiences", notes=ctx.input["lesson"], outcome="SUCCEEDED"
    )
    try:
        await ctx.knowledge.add("pretending", task_type="x", task_id="y" * 40)
        refused = None
    except KnowledgeError as exc:
        refused = exc.status
    return {
        "similar": [e["id"] for e in similar],
        "found": [e["id"] for e in found],
        "added": added,
        "refused": refused,
    }

"""Knowledge rules: add, get, list, delete, ranked search and "similar past
tasks".

Ranking. Text only: the database's relevance (see ``repository``). Hybrid
(the ``semantic`` extra installed and ``knowledge.semantic`` on): the best
:data:`CANDIDATES` by text and the best :data:`CANDIDATES` by cosine similarity
of embeddings are merged, and each scores
``(1 - w) * text / best_text + w * max(cosine, 0)`` where ``w`` is
``knowledge.semantic_weight`` and ``best_text`` the best text rank among the
candidates (so text ranks are in [0, 1] too). An experience not embedded yet
counts cosine 0; one the words miss counts text 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.auth.principal import Principal
from ymera.errors import Forbidden, NotFound
from ymera.kit import jsonx
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.knowledge import repository
from ymera.knowledge.schemas import ExperienceIn
from ymera.knowledge.semantic import Embedder, cosine
from ymera.models.knowledge import Experience
from ymera.tasks import service as tasks_service

CANDIDATES = 200
MAX_SIMILAR_TEXT = 4000


class ExperienceNotFound(NotFound):
    code = "experience_not_found"


class NotYours(Forbidden):
    code = "not_owner"


@dataclass(frozen=True)
class Hit:
    experience: Experience
    score: float


@dataclass(frozen=True)
class Ranking:
    engine: Embedder | None
    weight: float


@dataclass(frozen=True)
class Filters:
    task_type: str | None = None
    agent_id: str | None = None
    outcome: str | None = None
    exclude_task: str | None = None

    def kw(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "agent_id": self.agent_id,
            "outcome": self.outcome,
            "exclude_task": self.exclude_task,
        }


async def add(
    session: AsyncSession,
    *,
    principal: Principal,
    body: ExperienceIn,
    now: datetime,
    embedder: Embedder | None,
) -> Experience:
    agent_id = body.agent_id
    if principal.kind == "agent":
        if agent_id is not None and agent_id != principal.agent_id:
            raise Forbidden("An agent adds experiences as itself", code="not_owner")
        agent_id = principal.agent_id
    experience = Experience(
        id=new_id(),
        task_type=body.task_type,
        summary=body.summary,
        outcome=body.outcome,
        agent_id=agent_id,
        task_id=body.task_id,
        notes=body.notes,
        source="agent" if principal.kind == "agent" else "user",
        created_by=principal.id,
        created_at=now,
    )
    if embedder is not None:
        text = repository.embed_text(body.task_type, body.summary, body.notes)
        vectors = await embedder.encode([text])
        if vectors:
            experience.embedding = vectors[0]
    session.add(experience)
    await session.flush()
    return experience


async def get(session: AsyncSession, *, experience_id: str) -> Experience:
    experience = await repository.get(session, experience_id)
    if experience is None:
        raise ExperienceNotFound(f"Experience {experience_id} not found")
    return experience


async def remove(session: AsyncSession, *, principal: Principal, experience_id: str) -> None:
    """The one who added it may delete it; admins and operators may delete any."""
    experience = await get(session, experience_id=experience_id)
    manager = principal.kind == "user" and principal.role in ("admin", "operator")
    if experience.created_by != principal.id and not manager:
        raise NotYours("Only its author, an operator or an admin may delete an experience")
    await repository.remove(session, experience)


async def listing(
    session: AsyncSession, *, filters: Filters, cursor: str | None, limit: int
) -> Slice[Hit]:
    """Newest first."""
    before = decode_cursor(cursor)
    before_seq = before.get("s") if before else None
    if before_seq is not None and not isinstance(before_seq, int):
        before_seq = None
    rows = await repository.listing(
        session,
        task_type=filters.task_type,
        agent_id=filters.agent_id,
        outcome=filters.outcome,
        before_seq=before_seq,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor({"s": rows[-1].seq}) if more and rows else None
    return Slice(items=[Hit(r, 0.0) for r in rows], next_cursor=next_cursor)


async def search(
    session: AsyncSession,
    *,
    q: str,
    filters: Filters,
    cursor: str | None,
    limit: int,
    ranking: Ranking,
    any_word: bool = False,
) -> Slice[Hit]:
    """Experiences matching ``q``, most relevant first (offset pagination)."""
    at = decode_cursor(cursor)
    offset = at.get("o", 0) if at else 0
    if not isinstance(offset, int) or offset < 0:
        offset = 0
    vectors = await ranking.engine.encode([q]) if ranking.engine is not None else None
    if vectors is None:
        ranked = await repository.text_search(
            session, q=q, any_word=any_word, offset=offset, limit=limit + 1, **filters.kw()
        )
    else:
        ranked = await _hybrid(
            session,
            q=q,
            query_vector=vectors[0],
            any_word=any_word,
            filters=filters,
            w=ranking.weight,
        )
        ranked = ranked[offset : offset + limit + 1]
    more = len(ranked) > limit
    ranked = ranked[:limit]
    rows = await repository.by_seqs(session, [seq for seq, _ in ranked])
    hits = [Hit(rows[seq], round(score, 6)) for seq, score in ranked if seq in rows]
    next_cursor = encode_cursor({"o": offset + limit}) if more else None
    return Slice(items=hits, next_cursor=next_cursor)


async def _hybrid(
    session: AsyncSession,
    *,
    q: str,
    query_vector: bytes,
    any_word: bool,
    filters: Filters,
    w: float,
) -> list[tuple[int, float]]:
    text = dict(
        await repository.text_search(
            session, q=q, any_word=any_word, offset=0, limit=CANDIDATES, **filters.kw()
        )
    )
    embedded = await repository.embeddings(session, **filters.kw())
    sims: dict[int, float] = {}
    if embedded:
        scores = cosine(query_vector, [blob for _, blob in embedded])
        top = np.argsort(-scores)[:CANDIDATES]
        sims = {embedded[i][0]: max(float(scores[i]), 0.0) for i in top}
    best = max(text.values(), default=0.0) or 1.0
    merged = {
        seq: (1 - w) * text.get(seq, 0.0) / best + w * sims.get(seq, 0.0)
        for seq in text.keys() | sims.keys()
    }
    return sorted(merged.items(), key=lambda kv: (-kv[1], -kv[0]))


async def similar(
    session: AsyncSession,
    *,
    principal: Principal,
    task_id: str | None,
    text: str | None,
    task_type: str | None,
    outcome: str | None,
    limit: int,
    ranking: Ranking,
) -> list[Hit]:
    """Past experiences like a task (its type and input; the task's own experience
    left out) or like a text: any of the words, ranked (by meaning too when on)."""
    exclude = None
    if task_id is not None:
        task = await tasks_service.get_task(session, principal=principal, task_id=task_id)
        text = f"{task.type} {jsonx.dumps(task.input)}"[:MAX_SIMILAR_TEXT]
        task_type = task_type or task.type
        exclude = task.id
    assert text is not None
    page = await search(
        session,
        q=text,
        filters=Filters(task_type=task_type, outcome=outcome, exclude_task=exclude),
        cursor=None,
        limit=limit,
        ranking=ranking,
        any_word=True,
    )
    return page.items


async def counts(session: AsyncSession) -> tuple[int, int]:
    return await repository.counts(session)


async def pending(
    session: AsyncSession, *, embedder: Embedder, batch: int = 64
) -> list[tuple[int, bytes]]:
    """Vectors for up to ``batch`` experiences that have none yet (recorded from
    tasks), computed in a thread; stored by :func:`store_embeddings` (so the
    write transaction never waits for the model)."""
    rows = await repository.unembedded(session, limit=batch)
    if not rows:
        return []
    vectors = await embedder.encode([text for _, text in rows])
    if vectors is None:
        return []
    return [(seq, v) for (seq, _), v in zip(rows, vectors, strict=True)]


async def store_embeddings(session: AsyncSession, vectors: list[tuple[int, bytes]]) -> None:
    await repository.set_embeddings(session, vectors)

"""Every knowledge query. The ranked text search is per dialect:

* SQLite: the external-content FTS5 table ``knowledge_fts`` (porter stemming,
  kept in sync by triggers), ranked by ``bm25`` (task type weighs 2, summary
  and notes 1); the query is translated from the web-search syntax PostgreSQL
  accepts (words, ``"phrases"``, ``-excluded``, ``or``).
* PostgreSQL: the generated ``search`` tsvector (GIN index), matched by
  ``websearch_to_tsquery('english', q)`` and ranked by ``ts_rank_cd`` (task
  type weight A, summary and notes B).

Either rank is normalised to ``r / (1 + r)`` in [0, 1). "Any word" queries
(used to find similar experiences) OR the words instead of ANDing them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from typing import cast as typed

from sqlalchemy import (
    Table,
    bindparam,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.models.knowledge import Experience
from ymera.models.tasks import Task

# Words too common to count (PostgreSQL's english configuration drops these too).
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
    }
)
MAX_TERMS = 64
_QUERY = re.compile(r'"([^"]*)"|(-?)(\w+)')
_WORD = re.compile(r"\w+")
_T = typed(Table, Task.__table__)
_K = typed(Table, Experience.__table__)


def words(text_: str) -> list[str]:
    """The distinct searchable words of ``text_`` (lower case, no stop words), in order."""
    out: dict[str, None] = {}
    for w in _WORD.findall(text_.lower()):
        if w not in STOPWORDS and len(out) < MAX_TERMS:
            out[w] = None
    return list(out)


def fts5_query(q: str, *, any_word: bool = False) -> str | None:
    """An FTS5 MATCH expression for web-search syntax; None when nothing is searchable."""
    if any_word:
        ws = words(q)
        return " OR ".join(f'"{w}"' for w in ws) if ws else None
    terms: list[str] = []
    excluded: list[str] = []
    for phrase, minus, word in _QUERY.findall(q):
        if phrase:
            ws = _WORD.findall(phrase.lower())
            if ws:
                terms.append('"' + " ".join(ws) + '"')
            continue
        w = word.lower()
        if not w:
            continue
        if w == "or" and not minus:
            if terms and terms[-1] != "OR":
                terms.append("OR")
            continue
        if w in STOPWORDS:
            continue
        (excluded if minus else terms).append(f'"{w}"')
        if len(terms) + len(excluded) >= MAX_TERMS:
            break
    while terms and terms[-1] == "OR":
        terms.pop()
    if not terms:
        return None
    expr = " ".join(terms)
    for w in excluded:
        expr = f"({expr}) NOT {w}"
    return expr


def _filters(
    task_type: str | None, agent_id: str | None, outcome: str | None, exclude_task: str | None
) -> tuple[str, dict[str, Any]]:
    sql, params = [], {}
    if task_type is not None:
        sql.append("k.task_type = :task_type")
        params["task_type"] = task_type
    if agent_id is not None:
        sql.append("k.agent_id = :agent_id")
        params["agent_id"] = agent_id
    if outcome is not None:
        sql.append("k.outcome = :outcome")
        params["outcome"] = outcome
    if exclude_task is not None:
        sql.append("(k.task_id IS NULL OR k.task_id != :exclude_task)")
        params["exclude_task"] = exclude_task
    return "".join(f" AND {s}" for s in sql), params


async def text_search(
    session: AsyncSession,
    *,
    q: str,
    any_word: bool,
    task_type: str | None,
    agent_id: str | None,
    outcome: str | None,
    exclude_task: str | None,
    offset: int,
    limit: int,
) -> list[tuple[int, float]]:
    """(seq, relevance in [0, 1)) of the matching experiences, best first."""
    # Only constant fragments are formatted in; every value is a bound parameter.
    where, params = _filters(task_type, agent_id, outcome, exclude_task)
    params.update(limit=limit, offset=offset)
    if session.get_bind().dialect.name == "sqlite":
        match = fts5_query(q, any_word=any_word)
        if match is None:
            return []
        params["q"] = match
        sql = (
            "SELECT k.seq, -bm25(knowledge_fts, 2.0, 1.0, 1.0) AS r FROM knowledge_fts "  # noqa: S608
            "JOIN knowledge k ON k.seq = knowledge_fts.rowid "
            f"WHERE knowledge_fts MATCH :q{where} ORDER BY r DESC, k.seq DESC "
            "LIMIT :limit OFFSET :offset"
        )
    else:
        if not words(q):
            return []
        params["q"] = q
        query = (
            "replace(plainto_tsquery('english', :q)::text, ' & ', ' | ')::tsquery"
            if any_word
            else "websearch_to_tsquery('english', :q)"
        )
        sql = (
            "SELECT k.seq, ts_rank_cd(k.search, q.tq) AS r "  # noqa: S608
            f"FROM knowledge k, (SELECT {query} AS tq) AS q "
            f"WHERE k.search @@ q.tq{where} ORDER BY r DESC, k.seq DESC "
            "LIMIT :limit OFFSET :offset"
        )
    rows = (await session.execute(text(sql), params)).all()
    return [(int(seq), float(r) / (1.0 + float(r))) for seq, r in rows]


async def by_seqs(session: AsyncSession, seqs: Sequence[int]) -> dict[int, Experience]:
    if not seqs:
        return {}
    rows = await session.scalars(select(Experience).where(Experience.seq.in_(list(seqs))))
    return {e.seq: e for e in rows}


async def listing(
    session: AsyncSession,
    *,
    task_type: str | None,
    agent_id: str | None,
    outcome: str | None,
    before_seq: int | None,
    limit: int,
) -> list[Experience]:
    """Newest first."""
    stmt = select(Experience).order_by(Experience.seq.desc()).limit(limit)
    if task_type is not None:
        stmt = stmt.where(Experience.task_type == task_type)
    if agent_id is not None:
        stmt = stmt.where(Experience.agent_id == agent_id)
    if outcome is not None:
        stmt = stmt.where(Experience.outcome == outcome)
    if before_seq is not None:
        stmt = stmt.where(Experience.seq < before_seq)
    return list((await session.scalars(stmt)).all())


async def get(session: AsyncSession, experience_id: str) -> Experience | None:
    return (
        await session.scalars(select(Experience).where(Experience.id == experience_id))
    ).one_or_none()


async def remove(session: AsyncSession, experience: Experience) -> None:
    await session.execute(delete(Experience).where(Experience.seq == experience.seq))


async def counts(session: AsyncSession) -> tuple[int, int]:
    """(experiences, embedded experiences)."""
    row = (
        await session.execute(
            select(func.count(), func.count(Experience.embedding)).select_from(Experience)
        )
    ).one()
    return int(row[0]), int(row[1])


async def embeddings(
    session: AsyncSession,
    *,
    task_type: str | None,
    agent_id: str | None,
    outcome: str | None,
    exclude_task: str | None,
) -> list[tuple[int, bytes]]:
    """Every embedded experience's (seq, vector) under the filters."""
    stmt = select(Experience.seq, Experience.embedding).where(Experience.embedding.is_not(None))
    if task_type is not None:
        stmt = stmt.where(Experience.task_type == task_type)
    if agent_id is not None:
        stmt = stmt.where(Experience.agent_id == agent_id)
    if outcome is not None:
        stmt = stmt.where(Experience.outcome == outcome)
    if exclude_task is not None:
        stmt = stmt.where((Experience.task_id.is_(None)) | (Experience.task_id != exclude_task))
    return [(int(s), bytes(e or b"")) for s, e in (await session.execute(stmt)).all()]


async def unembedded(session: AsyncSession, *, limit: int) -> list[tuple[int, str]]:
    """Experiences without an embedding yet: (seq, text to embed)."""
    rows = await session.execute(
        select(Experience.seq, Experience.task_type, Experience.summary, Experience.notes)
        .where(Experience.embedding.is_(None))
        .order_by(Experience.seq)
        .limit(limit)
    )
    return [(int(r.seq), embed_text(r.task_type, r.summary, r.notes)) for r in rows]


async def set_embeddings(session: AsyncSession, vectors: Sequence[tuple[int, bytes]]) -> None:
    if vectors:
        stmt = (
            _K.update()
            .where(_K.c.seq == bindparam("k_seq"))
            .values(embedding=bindparam("k_embedding"))
        )
        await session.execute(stmt, [{"k_seq": s, "k_embedding": v} for s, v in vectors])


def embed_text(task_type: str, summary: str, notes: str) -> str:
    return f"{task_type}: {summary}\n{notes}".strip()

"""`/api/v1/knowledge`: experiences (recorded from finished tasks, or added by
people and agents), ranked search and similar past tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ymera.auth.dependencies import require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.errors import Unprocessable
from ymera.kit.pagination import Page
from ymera.knowledge import service
from ymera.knowledge.schemas import (
    ExperienceIn,
    ExperienceOut,
    KnowledgeStatus,
    Outcome,
    SemanticStatus,
)
from ymera.knowledge.semantic import MODEL_NAME, Embedder
from ymera.state import AppState, DbSession, State

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge"])

Read = Annotated[Principal, Depends(require(Permission.KNOWLEDGE_READ))]
Write = Annotated[Principal, Depends(require(Permission.KNOWLEDGE_WRITE))]
TypeQuery = Annotated[str | None, Query(min_length=1, max_length=100)]
AgentQuery = Annotated[str | None, Query(min_length=1, max_length=36)]


def embedder(state: AppState) -> Embedder:
    found: Embedder = state.extras["knowledge"]
    return found


def _ranking(state: AppState) -> service.Ranking:
    engine = embedder(state)
    return service.Ranking(
        engine=engine if engine.active else None, weight=state.settings.knowledge.semantic_weight
    )


def _out(hit: service.Hit, scored: bool) -> ExperienceOut:
    out = ExperienceOut.model_validate(hit.experience)
    out.score = hit.score if scored else None
    return out


@router.post("", response_model=ExperienceOut, status_code=201)
async def add_experience(
    body: ExperienceIn, session: DbSession, state: State, principal: Write
) -> ExperienceOut:
    """Add an experience: a task type, what was asked or done (`summary`), the
    outcome and what was learned (`notes`). With an agent key it is that agent's."""
    engine = embedder(state)
    row = await service.add(
        session,
        principal=principal,
        body=body,
        now=state.clock.now(),
        embedder=engine if engine.active else None,
    )
    return ExperienceOut.model_validate(row)


@router.get("", response_model=Page[ExperienceOut])
async def list_experiences(
    session: DbSession,
    state: State,
    _: Read,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=1000,
            description='Web-search syntax: words (all must match), "a phrase", '
            "-excluded, `or`. Given: most relevant first, with a `score`.",
        ),
    ] = None,
    type: TypeQuery = None,
    agent_id: AgentQuery = None,
    outcome: Outcome | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[ExperienceOut]:
    """Experiences, newest first; with `q`, a ranked search (by text, and by
    meaning too when the semantic extra is installed). Filters: task `type`,
    `agent_id`, `outcome`."""
    filters = service.Filters(task_type=type, agent_id=agent_id, outcome=outcome)
    if q is None:
        page = await service.listing(session, filters=filters, cursor=cursor, limit=limit)
    else:
        page = await service.search(
            session, q=q, filters=filters, cursor=cursor, limit=limit, ranking=_ranking(state)
        )
    return Page[ExperienceOut](
        items=[_out(h, q is not None) for h in page.items], next_cursor=page.next_cursor
    )


@router.get("/status", response_model=KnowledgeStatus)
async def knowledge_status(session: DbSession, state: State, _: Read) -> KnowledgeStatus:
    """How the knowledge base searches: the text index, whether semantic (hybrid)
    ranking is on (and if not, why), whether finished tasks are recorded."""
    engine = embedder(state)
    cfg = state.settings.knowledge
    entries, embedded = await service.counts(session)
    return KnowledgeStatus(
        text_search="sqlite-fts5" if state.db.is_sqlite else "postgresql-fts",
        ranking="hybrid" if engine.active else "text",
        record_tasks=cfg.record_tasks,
        semantic=SemanticStatus(
            available=engine.available,
            enabled=engine.enabled,
            model=MODEL_NAME if engine.available else None,
            weight=cfg.semantic_weight,
            reason=engine.reason,
        ),
        entries=entries,
        embedded=embedded,
    )


@router.get("/similar", response_model=list[ExperienceOut])
async def similar_experiences(
    session: DbSession,
    state: State,
    principal: Read,
    task_id: AgentQuery = None,
    text: Annotated[str | None, Query(min_length=1, max_length=4000)] = None,
    type: TypeQuery = None,
    outcome: Outcome | None = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> list[ExperienceOut]:
    """Past experiences like a task (`task_id`: one you may see; its type unless
    `type` says otherwise; its own experience left out) or like a `text`, most
    similar first: what an agent reads before working."""
    if (task_id is None) == (text is None):
        raise Unprocessable("Give exactly one of task_id and text", code="task_or_text")
    hits = await service.similar(
        session,
        principal=principal,
        task_id=task_id,
        text=text,
        task_type=type,
        outcome=outcome,
        limit=limit,
        ranking=_ranking(state),
    )
    return [_out(h, True) for h in hits]


@router.get("/{experience_id}", response_model=ExperienceOut)
async def get_experience(experience_id: str, session: DbSession, _: Read) -> ExperienceOut:
    """One experience."""
    return ExperienceOut.model_validate(await service.get(session, experience_id=experience_id))


@router.delete("/{experience_id}", status_code=204)
async def delete_experience(experience_id: str, session: DbSession, principal: Write) -> None:
    """Delete an experience (its author, an operator or an admin)."""
    await service.remove(session, principal=principal, experience_id=experience_id)

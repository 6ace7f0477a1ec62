"""`/api/v1/routing/policy` (the routing policy, global and per task type) and
`/api/v1/learning` (learned statistics, reset)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ymera.auth.dependencies import require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.models.routing import RoutingPolicy
from ymera.routing import service
from ymera.routing.engine import GLOBAL, RoutingEngine
from ymera.routing.learning import service as learning
from ymera.routing.schemas import (
    Ejection,
    LearningStatOut,
    LearningStats,
    PolicyIn,
    PolicyOut,
    PolicySet,
    ResetOut,
)
from ymera.state import AppState, DbSession, State

routing_router = APIRouter(prefix="/api/v1/routing", tags=["routing"])
learning_router = APIRouter(prefix="/api/v1/learning", tags=["learning"])

RoutingRead = Annotated[Principal, Depends(require(Permission.ROUTING_READ))]
RoutingWrite = Annotated[Principal, Depends(require(Permission.ROUTING_WRITE))]
LearningRead = Annotated[Principal, Depends(require(Permission.LEARNING_READ))]
LearningWrite = Annotated[Principal, Depends(require(Permission.LEARNING_WRITE))]


def _engine(state: AppState) -> RoutingEngine:
    engine: RoutingEngine = state.extras["routing"]
    return engine


def _out(row: RoutingPolicy) -> PolicyOut:
    return PolicyOut(
        task_type=None if row.scope == GLOBAL else row.scope,
        strategy=row.strategy,
        mode=row.mode,
        params=row.params,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


@routing_router.get("/policy", response_model=PolicySet)
async def get_policy(session: DbSession, _: RoutingRead) -> PolicySet:
    """The global routing policy (strategy and learning mode) and the
    per-task-type overrides. Without a stored global policy the default is
    `least_loaded` with learning PASSIVE (outcomes recorded, not used)."""
    rows = await service.policies(session)
    default = next((r for r in rows if r.scope == GLOBAL), None)
    return PolicySet(
        default=_out(default)
        if default
        else PolicyOut(
            task_type=None,
            strategy="least_loaded",
            mode="PASSIVE",
            params={},
            updated_at=None,
            updated_by=None,
        ),
        per_type=[_out(r) for r in rows if r.scope != GLOBAL],
    )


@routing_router.put("/policy", response_model=PolicyOut)
async def put_policy(
    body: PolicyIn, session: DbSession, state: State, principal: RoutingWrite
) -> PolicyOut:
    """Set the global policy (`task_type` null) or one task type's. Records a
    `routing.policy_changed` event; this replica routes by it from the commit
    on, the others within `routing.refresh_interval` seconds."""
    row = await service.set_policy(session, body=body, actor=principal.id, now=state.clock.now())
    return _out(row)


@routing_router.delete("/policy/{task_type}", status_code=204)
async def delete_policy(task_type: str, session: DbSession, principal: RoutingWrite) -> None:
    """Remove a task type's policy (it follows the global one again)."""
    await service.remove_policy(session, task_type=task_type, actor=principal.id)


@learning_router.get("/stats", response_model=LearningStats)
async def learning_stats(
    session: DbSession,
    state: State,
    _: LearningRead,
    agent_id: Annotated[str | None, Query(max_length=36)] = None,
    task_type: Annotated[str | None, Query(max_length=100)] = None,
) -> LearningStats:
    """What the learning engine knows per (agent, task type): outcomes, the
    discounted Beta posterior of success, the log-normal latency estimate,
    feedback, the expected reward under the policy's weights, and the prior
    pooled from the agent's peers; plus the agents outlier detection ejected."""
    engine = _engine(state)
    rows = await learning.stats(
        session, engine=engine, now=state.clock.now(), agent_id=agent_id, task_type=task_type
    )
    now = engine.now()
    return LearningStats(
        half_life_seconds=engine.cfg.learning_half_life,
        prior_strength=engine.cfg.prior_strength,
        stats=[LearningStatOut.model_validate(r) for r in rows],
        ejected=[Ejection.model_validate(e) for e in engine.detector.describe(now)],
    )


@learning_router.post("/reset", response_model=ResetOut)
async def learning_reset(
    session: DbSession,
    state: State,
    _: LearningWrite,
    agent_id: Annotated[str | None, Query(max_length=36)] = None,
    task_type: Annotated[str | None, Query(max_length=100)] = None,
) -> ResetOut:
    """Forget what was learned: everything, or one agent's, or one task type's."""
    deleted = await learning.reset(
        session, engine=_engine(state), agent_id=agent_id, task_type=task_type
    )
    return ResetOut(deleted=deleted)

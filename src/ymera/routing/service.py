"""Routing policies: read, set (global or per task type), remove; every change
is an event (``routing.policy_changed``) and reaches this replica's engine at
commit (the others' at their next refresh)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.db.database import DB_KEY
from ymera.errors import NotFound
from ymera.events.outbox import record_event
from ymera.models.routing import RoutingPolicy
from ymera.routing.engine import GLOBAL, Policy, RoutingEngine, engine_of
from ymera.routing.learning.model import Mode
from ymera.routing.schemas import PolicyIn

_CHANGED = "ymera_routing_policy_changed"


def to_policy(row: RoutingPolicy) -> Policy:
    return Policy(
        scope=row.scope,
        strategy=row.strategy,
        mode=Mode(row.mode),
        params=dict(row.params or {}),
        updated_at=row.updated_at,
    )


async def policies(session: AsyncSession) -> list[RoutingPolicy]:
    return list((await session.scalars(select(RoutingPolicy).order_by(RoutingPolicy.scope))).all())


async def set_policy(
    session: AsyncSession, *, body: PolicyIn, actor: str, now: Any
) -> RoutingPolicy:
    scope = body.task_type or GLOBAL
    params = body.params.model_dump(exclude_none=True)
    values = {
        "scope": scope,
        "strategy": body.strategy,
        "mode": body.mode,
        "params": params,
        "updated_at": now,
        "updated_by": actor,
    }
    insert_ = (
        postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    )
    stmt = insert_(RoutingPolicy).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["scope"], set_={k: v for k, v in values.items() if k != "scope"}
    )
    await session.execute(stmt)
    row = await session.get(RoutingPolicy, scope, populate_existing=True)
    assert row is not None
    record_event(
        session,
        type="routing.policy_changed",
        resource_type="routing_policy",
        resource_id=scope,
        data={"task_type": body.task_type, "strategy": body.strategy, "mode": body.mode},
        actor=actor,
    )
    session.info.setdefault(_CHANGED, []).append((scope, to_policy(row)))
    return row


async def remove_policy(session: AsyncSession, *, task_type: str, actor: str) -> None:
    result: Any = await session.execute(
        delete(RoutingPolicy).where(RoutingPolicy.scope == task_type)
    )
    if not result.rowcount:
        raise NotFound(f"No routing policy for task type {task_type!r}", code="policy_not_found")
    record_event(
        session,
        type="routing.policy_changed",
        resource_type="routing_policy",
        resource_id=task_type,
        data={"task_type": task_type, "removed": True},
        actor=actor,
    )
    session.info.setdefault(_CHANGED, []).append((task_type, None))


async def refresh(session: AsyncSession, *, engine: RoutingEngine) -> None:
    engine.set_policies([to_policy(r) for r in await policies(session)])


@sa_event.listens_for(Session, "after_commit")
def _changed(session: Session) -> None:
    changes = session.info.pop(_CHANGED, None)
    engine = engine_of(session.info.get(DB_KEY)) if changes else None
    if engine is not None and changes:
        table = dict(engine.policies)
        for scope, policy in changes:
            if policy is None:
                table.pop(scope, None)
            else:
                table[scope] = policy
        engine.set_policies([p for p in table.values() if p.updated_at is not None])


@sa_event.listens_for(Session, "after_rollback")
def _dropped(session: Session) -> None:
    session.info.pop(_CHANGED, None)

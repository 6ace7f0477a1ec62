"""The learning engine's persistence: outcomes in, statistics out.

Every attempt's outcome and every feedback score reaches :func:`record` (a
``tasks.hooks`` outcome listener) inside the transaction that records it; at
commit the session's outcomes become one executemany upsert into
``learning_stats``, and after commit this replica's engine learns them.

The stored sums are *forward-decayed*: an outcome at time ``t`` adds
``x * 2^((t - L) / H)`` where ``H`` is the half-life and ``L`` the landmark of
the current era (eras are 256 half-lives long, so weights stay finite). Their
value at ``now`` is the sum times ``2^((L - now) / H)``. So every write is an
addition (no read, no lost update between concurrent reports or replicas) and
the discount is exact. A row of an older era is scaled down by ``2^-256`` (one
era) or dropped (more) when a newer outcome lands.

An ejection makes the engine forget most of what it knew of the agent; the
refresh loop writes that to the store (:func:`store_forgotten`, every stored
sum of the agent scaled) before it reloads, or the reload would undo it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import case, delete, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.db import driver
from ymera.db.database import DB_KEY, LAST, at_commit
from ymera.models.agents import Agent
from ymera.models.routing import LearningStat
from ymera.routing.engine import RoutingEngine, engine_of, peer_group
from ymera.routing.learning.model import LearningState
from ymera.routing.learning.stats import STATS, add_outcome
from ymera.tasks import hooks

_BUFFER = "ymera_learning_outcomes"
_APPLY = "ymera_learning_apply"
EPOCH = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
ERA_HALVINGS = 256
_T = LearningStat.__table__


def era_of(t: float, half_life: float | None) -> tuple[int, float]:
    """(era, weight) of an outcome at ``t`` (epoch seconds)."""
    if not half_life:
        return 0, 1.0
    span = half_life * ERA_HALVINGS
    era = int((t - EPOCH) // span)
    return era, 2.0 ** ((t - EPOCH - era * span) / half_life)


def value_scale(era: int, now: float, half_life: float | None) -> float:
    """What a stored sum of ``era`` is multiplied by to be worth its value at ``now``."""
    if not half_life:
        return 1.0
    landmark = EPOCH + era * half_life * ERA_HALVINGS
    return float(2.0 ** ((landmark - now) / half_life))


@hooks.on_outcome
async def record(session: AsyncSession, outcome: hooks.Outcome) -> None:
    """Buffer one outcome; it is written at commit and learned after it."""
    session.info.setdefault(_BUFFER, []).append(outcome)


_UPSERTS: dict[str, Any] = {}


def _upsert(dialect: str) -> Any:
    cached = _UPSERTS.get(dialect)
    if cached is None:
        insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert_(LearningStat)
        ex = stmt.excluded
        one_era = 2.0**-ERA_HALVINGS
        values: dict[str, Any] = {
            name: case(
                (_T.c.era == ex.era, _T.c[name] + ex[name]),
                (_T.c.era > ex.era, _T.c[name]),
                (_T.c.era + 1 == ex.era, _T.c[name] * one_era + ex[name]),
                else_=ex[name],
            )
            for name in STATS
        }
        values["era"] = case((_T.c.era > ex.era, _T.c.era), else_=ex.era)
        values["n"] = _T.c.n + ex.n
        values["updated_at"] = ex.updated_at
        cached = stmt.on_conflict_do_update(index_elements=["agent_id", "task_type"], set_=values)
        _UPSERTS[dialect] = cached
    return cached


@at_commit(LAST - 20)
def _write(session: Session) -> None:
    outcomes: list[hooks.Outcome] | None = session.info.pop(_BUFFER, None)
    if not outcomes:
        return
    engine = engine_of(session.info.get(DB_KEY))
    half_life = engine.cfg.learning_half_life if engine else None
    # One row per (agent, type, era): the sums are additive, and a batch of
    # results is hundreds of outcomes of a few agents (sharing a few instants:
    # each instant's era and weight are computed once).
    merged: dict[tuple[str, str, int], dict[str, Any]] = {}
    eras: dict[datetime, tuple[int, float]] = {}
    for o in outcomes:
        at = o.at
        era_w = eras.get(at)
        if era_w is None:
            era_w = eras[at] = era_of(at.timestamp(), half_life)
        era, w = era_w
        key = (o.agent_id, o.task_type, era)
        into = merged.get(key)
        if into is None:
            into = merged[key] = dict.fromkeys(STATS, 0.0)
            into.update(agent_id=o.agent_id, task_type=o.task_type, era=era, n=0, updated_at=at)
        elif at > into["updated_at"]:
            into["updated_at"] = at
        into["n"] += add_outcome(into, o.success, o.latency, o.feedback, w)
    rows = [merged[k] for k in sorted(merged)]
    stmt = _upsert(session.get_bind().dialect.name)
    driver.execute_core_many_sync(session.connection(), stmt, rows)
    session.info[_APPLY] = outcomes


@sa_event.listens_for(Session, "after_commit")
def _learn(session: Session) -> None:
    outcomes = session.info.pop(_APPLY, None)
    if outcomes:
        engine = engine_of(session.info.get(DB_KEY))
        if engine is not None:
            engine.apply(outcomes)


@sa_event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_BUFFER, None)
    session.info.pop(_APPLY, None)


# --- reading --------------------------------------------------------------------------


async def load_state(
    session: AsyncSession,
    *,
    half_life: float | None,
    prior_strength: float,
    now: datetime,
    agent_id: str | None = None,
    order: list[str] | None = None,
) -> tuple[LearningState, list[LearningStat]]:
    """A learning state built from the stored statistics (and every agent's peer
    group); also returns the rows (optionally only one agent's). ``order``: agent
    ids that take the first rows, in that order (the rows of the state it
    replaces, which a strategy's own state is indexed by)."""
    state = LearningState(half_life=half_life, prior_strength=prior_strength)
    agents = (await session.execute(select(Agent.id, Agent.type, Agent.capabilities))).all()
    groups = {
        a.id: peer_group(a.type, [str(c["name"]) for c in a.capabilities or []]) for a in agents
    }
    for known in order or ():
        state.agent_row(known, group=groups.get(known))
    for a_id, group in groups.items():
        state.agent_row(a_id, group=group)
    rows = list((await session.scalars(select(LearningStat))).all())
    at = now.timestamp()
    for r in rows:
        k = value_scale(r.era, at, half_life)
        state.load_cell(
            r.agent_id, r.task_type, {name: getattr(r, name) * k for name in STATS}, n=r.n, at=at
        )
    if agent_id is not None:
        rows = [r for r in rows if r.agent_id == agent_id]
    return state, rows


async def store_forgotten(session: AsyncSession, *, engine: RoutingEngine) -> dict[str, float]:
    """Write what this replica's ejections forgot (``engine.forgotten``): every
    stored statistic of each agent scaled by the share kept, so that the state
    reloaded from the store (by every replica, and after a restart) has
    forgotten it too. Returns what was written, for
    :meth:`RoutingEngine.forgetting_stored` once the transaction commits."""
    written = dict(engine.forgotten)
    for agent_id, keep in written.items():
        await session.execute(
            update(LearningStat)
            .where(LearningStat.agent_id == agent_id)
            .values({name: _T.c[name] * keep for name in STATS})
        )
    return written


async def refresh(session: AsyncSession, *, engine: RoutingEngine, now: datetime) -> None:
    """Replace the engine's learned state with the stored one (all replicas')."""
    state, _ = await load_state(
        session,
        half_life=engine.cfg.learning_half_life,
        prior_strength=engine.cfg.prior_strength,
        now=now,
        order=list(engine.learning.agent_ids),
    )
    engine.replace_learning(state)


async def stats(
    session: AsyncSession,
    *,
    engine: RoutingEngine,
    now: datetime,
    agent_id: str | None = None,
    task_type: str | None = None,
) -> list[dict[str, Any]]:
    """Per (agent, task type): outcomes, the discounted posterior, latency and
    feedback estimates, the expected reward, and what was pooled from peers."""
    state, rows = await load_state(
        session,
        half_life=engine.cfg.learning_half_life,
        prior_strength=engine.cfg.prior_strength,
        now=now,
        agent_id=agent_id,
    )
    weights = engine.policy_for(task_type or "*").reward_weights()
    out = []
    for r in sorted(rows, key=lambda r: (r.task_type, r.agent_id)):
        if task_type is not None and r.task_type != task_type:
            continue
        est = state.view(np.array([state.agents[r.agent_id]]), r.task_type, now.timestamp())
        p = float(est.success[0])
        out.append(
            {
                "agent_id": r.agent_id,
                "task_type": r.task_type,
                "outcomes": r.n,
                "weight": round(float(est.weight[0]), 4),
                "alpha": round(float(est.alpha[0]), 4),
                "beta": round(float(est.beta[0]), 4),
                "success_mean": round(p, 4),
                "latency_expected": round(float(est.latency[0]), 4),
                "latency_log_mu": round(float(est.log_mu[0]), 4),
                "latency_log_sigma": round(float(est.log_sigma[0]), 4),
                "feedback_mean": round(float(est.feedback[0]), 4),
                "feedback_count": round(float(est.feedback_n[0]), 4),
                "expected_reward": round(float(est.reward(weights)[0]), 4),
                "pooled_prior": {
                    "pseudo_observations": round(float(est.prior[0]), 4),
                    "peer_success": round(float(est.peer_success[0]), 4),
                    "agent_offset": round(float(est.agent_offset[0]), 4),
                },
                "updated_at": r.updated_at,
            }
        )
    return out


async def reset(
    session: AsyncSession,
    *,
    engine: RoutingEngine,
    agent_id: str | None = None,
    task_type: str | None = None,
) -> int:
    """Forget what was learned (everything, one agent's, or one task type's)."""
    stmt = delete(LearningStat)
    if agent_id is not None:
        stmt = stmt.where(LearningStat.agent_id == agent_id)
    if task_type is not None:
        stmt = stmt.where(LearningStat.task_type == task_type)
    result: Any = await session.execute(stmt)
    engine.learning.reset(agent_id=agent_id, task_type=task_type)
    if agent_id is None and task_type is None:
        engine.detector.reset()
        engine.forgotten.clear()
        engine.restart_strategies()
    elif agent_id is not None:
        engine.detector.reset(agent_id)
        engine.forgotten.pop(agent_id, None)
    return int(result.rowcount or 0)

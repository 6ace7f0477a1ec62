"""Per-agent performance metrics, kept incrementally.

Every task outcome and every feedback score is one upsert (``INSERT ... ON
CONFLICT DO UPDATE``) that adds to two counter rows at once: the agent's
minute bucket and its hour bucket. A window's metrics are sums over the
window's buckets only; latency percentiles come from a histogram over fixed
log-spaced bounds (1 ms x sqrt(2)^k), so merging buckets is adding counts and a
percentile estimate lies in the same bucket as the true value (within a
factor of sqrt(2)).

Prometheus series labelled by agent are bounded: the first
``metrics_max_agent_labels`` agents seen by a process get their own label, the
rest share ``agent="_other"`` (see docs/agents-health.md).
"""

from __future__ import annotations

import math
import weakref
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.agents import health_checks
from ymera.agents import service as agents_service
from ymera.agents.health_checks import HealthSnapshot
from ymera.agents.schemas import MetricsWindow as Window
from ymera.db import driver
from ymera.db.database import DB_KEY, LAST, Database, at_commit
from ymera.models.agent_metrics import (
    HISTOGRAM_COLUMNS,
    HOUR,
    LATENCY_BOUNDS,
    MINUTE,
    AgentMetricBucket,
)
from ymera.models.agents import Agent
from ymera.monitoring.metrics import Metrics

OTHER_LABEL = "_other"
_T = AgentMetricBucket.__table__
_KEY = (_T.c.agent_id, _T.c.period, _T.c.bucket_start, _T.c.task_type)
_COUNTERS = ("successes", "failures", "latency_sum", "quality_sum", "quality_count")
_ZERO_ROW: dict[str, int | float] = dict.fromkeys((*_COUNTERS, *HISTOGRAM_COLUMNS), 0)


# --- histogram math ----------------------------------------------------------------------


def bucket_index(latency_seconds: float) -> int:
    """The histogram bucket of a latency: the first bound >= it (last: overflow)."""
    return bisect_left(LATENCY_BOUNDS, latency_seconds)


def bucket_range(index: int) -> tuple[float, float]:
    """``(lower, upper]`` of bucket ``index``; the overflow bucket's upper is inf."""
    lower = 0.0 if index == 0 else LATENCY_BOUNDS[index - 1]
    upper = LATENCY_BOUNDS[index] if index < len(LATENCY_BOUNDS) else math.inf
    return lower, upper


def quantile(counts: Sequence[int], q: float) -> float | None:
    """Estimate the ``q`` quantile (nearest rank) from histogram counts.

    Finds the bucket holding the rank-th smallest sample and interpolates
    geometrically inside it (linearly in the first bucket, which starts at 0).
    The overflow bucket answers its lower bound. None without samples.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            lower, upper = bucket_range(index)
            fraction = (rank - seen) / count
            if math.isinf(upper):
                return lower
            if lower == 0.0:
                return upper * fraction
            return float(lower * (upper / lower) ** fraction)
        seen += count
    return None  # pragma: no cover  (unreachable: rank <= total)


# --- recording (called by the task engine) -----------------------------------------------


_FLOORS: dict[tuple[datetime, int], datetime] = {}


def _floor(now: datetime, period: int) -> datetime:
    # A commit's outcomes share a few instants (a worker's batch of reports has
    # one): each is floored once.
    key = (now, period)
    floored = _FLOORS.get(key)
    if floored is None:
        if len(_FLOORS) >= 1024:
            _FLOORS.clear()
        seconds = int(now.astimezone(UTC).timestamp()) // period * period
        floored = _FLOORS[key] = datetime.fromtimestamp(seconds, UTC)
    return floored


_BUFFER = "ymera_metric_buffer"


async def _add(
    session: AsyncSession,
    *,
    agent_id: str,
    task_type: str,
    now: datetime,
    values: dict[str, int | float],
) -> None:
    """Add ``values`` to the agent's minute and hour buckets.

    Buffered on the session and summed per (agent, task type, minute): at commit
    each group is one upsert, so a batch of many outcomes of one agent costs one
    statement, not one per outcome. A rollback drops the buffer.
    """
    buffer: dict[tuple[str, str, datetime], dict[str, int | float]] = session.info.setdefault(
        _BUFFER, {}
    )
    key = (agent_id, task_type, _floor(now, MINUTE))
    sums = buffer.setdefault(key, {})
    for name, value in values.items():
        sums[name] = sums.get(name, 0) + value


def _upsert_statement(dialect: str) -> Any:
    """One upsert that adds every counter of a row to its bucket; built and
    compiled once per dialect (a statement shaped by each batch's values would be
    compiled anew every commit, which costs milliseconds)."""
    cached = _UPSERTS.get(dialect)
    if cached is None:
        insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert_(AgentMetricBucket)
        cached = stmt.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={name: _T.c[name] + stmt.excluded[name] for name in _ZERO_ROW},
        )
        _UPSERTS[dialect] = cached
    return cached


_UPSERTS: dict[str, Any] = {}


def _upsert_rows(
    buffer: dict[tuple[str, str, datetime], dict[str, int | float]],
) -> list[dict[str, Any]]:
    """The minute and hour rows of every buffered group, in one key order (so
    concurrent commits lock bucket rows in the same order)."""
    rows = [
        {
            **_ZERO_ROW,
            **values,
            "agent_id": agent_id,
            "period": period,
            "bucket_start": _floor(minute, period),
            "task_type": task_type,
        }
        for (agent_id, task_type, minute), values in buffer.items()
        for period in (MINUTE, HOUR)
    ]
    rows.sort(key=lambda r: (r["agent_id"], r["period"], r["bucket_start"], r["task_type"]))
    return rows


@at_commit(LAST - 30)
def _write_buffered_metrics(session: Session) -> None:
    buffer = session.info.pop(_BUFFER, None)
    if buffer:
        dialect = session.get_bind().dialect.name
        stmt = _upsert_statement(dialect)
        # Core, all rows in one executemany: no ORM bulk machinery per row.
        driver.execute_core_many_sync(session.connection(), stmt, _upsert_rows(buffer))


async def record_outcome(
    session: AsyncSession,
    *,
    agent_id: str,
    task_type: str,
    success: bool,
    latency_seconds: float,
    now: datetime,
) -> None:
    """Count one finished task of ``agent_id``: one upsert, in the caller's transaction.

    ``latency_seconds`` is the time the agent took (negative values count as 0).
    The Prometheus series are updated when the transaction commits (the agent's
    name, their label, is looked up once per process, at its first outcome).
    """
    if not math.isfinite(latency_seconds):
        raise ValueError(f"latency must be finite, not {latency_seconds!r}")
    latency = max(0.0, float(latency_seconds))
    await _add(
        session,
        agent_id=agent_id,
        task_type=task_type,
        now=now,
        values={
            "successes" if success else "failures": 1,
            "latency_sum": latency,
            HISTOGRAM_COLUMNS[bucket_index(latency)]: 1,
        },
    )
    series = _series_for(session)
    if series is not None:
        label = await series.label_for(session, agent_id)
        session.info.setdefault(_PENDING, []).append((label, success, latency))


async def record_feedback(
    session: AsyncSession,
    *,
    agent_id: str,
    score: float,
    now: datetime,
    task_type: str | None = None,
) -> None:
    """Count one quality score (0..1) for ``agent_id``: one upsert.

    ``task_type`` (optional) files it under that task type for per-type windows.
    """
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise ValueError(f"score must be within 0..1, not {score!r}")
    await _add(
        session,
        agent_id=agent_id,
        task_type=task_type or "",
        now=now,
        values={"quality_sum": float(score), "quality_count": 1},
    )


# --- windows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowTotals:
    period: int
    since: datetime
    successes: int
    failures: int
    latency_sum: float
    quality_sum: float
    quality_count: int
    histogram: tuple[int, ...]

    @property
    def tasks(self) -> int:
        return self.successes + self.failures


def window_bounds(
    window: Window, *, now: datetime, minute_retention_hours: int
) -> tuple[int, datetime]:
    """The bucket period that serves ``window`` and the start of its first bucket.

    The window is the bucket containing ``now`` plus the ones before it, as many
    as fit in the window: [since, now] spans between window - period and window.
    """
    period = MINUTE if window.seconds <= minute_retention_hours * 3600 else HOUR
    current = _floor(now, period)
    since = current - timedelta(seconds=window.seconds - period)
    return period, since


async def window_totals(
    session: AsyncSession,
    *,
    agent_id: str,
    window: Window,
    now: datetime,
    minute_retention_hours: int,
    task_type: str | None = None,
) -> WindowTotals:
    """Sum the agent's buckets that fall in ``window`` (one aggregate query)."""
    period, since = window_bounds(window, now=now, minute_retention_hours=minute_retention_hours)
    columns = (*_COUNTERS, *HISTOGRAM_COLUMNS)
    stmt = select(*(func.coalesce(func.sum(_T.c[c]), 0) for c in columns)).where(
        _T.c.agent_id == agent_id,
        _T.c.period == period,
        _T.c.bucket_start >= since,
        _T.c.bucket_start <= now,
    )
    if task_type is not None:
        stmt = stmt.where(_T.c.task_type == task_type)
    row = (await session.execute(stmt)).one()
    return WindowTotals(
        period=period,
        since=since,
        successes=int(row[0]),
        failures=int(row[1]),
        latency_sum=float(row[2]),
        quality_sum=float(row[3]),
        quality_count=int(row[4]),
        histogram=tuple(int(v) for v in row[5:]),
    )


@dataclass(frozen=True)
class AgentMetricsReport:
    agent_id: str
    name: str
    window: Window
    task_type: str | None
    since: datetime
    until: datetime
    resolution_seconds: int
    tasks: int
    successes: int
    failures: int
    success_rate: float | None
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None
    latency_mean_seconds: float | None
    throughput_per_minute: float
    current_load: int
    max_concurrency: int
    status: str
    quality_score: float | None
    feedback_count: int
    health: HealthSnapshot | None


def summarise(totals: WindowTotals, *, now: datetime) -> dict[str, Any]:
    """Rates, percentiles and throughput of a window's totals."""
    n = totals.tasks
    minutes = max((now - totals.since).total_seconds(), 1.0) / 60
    return {
        "tasks": n,
        "successes": totals.successes,
        "failures": totals.failures,
        "success_rate": totals.successes / n if n else None,
        "latency_p50_seconds": quantile(totals.histogram, 0.50),
        "latency_p95_seconds": quantile(totals.histogram, 0.95),
        "latency_mean_seconds": totals.latency_sum / n if n else None,
        "throughput_per_minute": n / minutes,
        "quality_score": (
            totals.quality_sum / totals.quality_count if totals.quality_count else None
        ),
        "feedback_count": totals.quality_count,
    }


async def agent_metrics(
    session: AsyncSession,
    *,
    agent_id: str,
    window: Window,
    now: datetime,
    minute_retention_hours: int,
    task_type: str | None = None,
) -> AgentMetricsReport:
    """The agent's metrics over ``window`` (404 for an unknown agent)."""
    agent = await agents_service.get_agent(session, agent_id=agent_id)
    totals = await window_totals(
        session,
        agent_id=agent_id,
        window=window,
        now=now,
        minute_retention_hours=minute_retention_hours,
        task_type=task_type,
    )
    health = await health_checks.health_of(session, agent_id=agent_id, now=now)
    return AgentMetricsReport(
        agent_id=agent.id,
        name=agent.name,
        window=window,
        task_type=task_type,
        since=totals.since,
        until=now,
        resolution_seconds=totals.period,
        current_load=agent.current_load,
        max_concurrency=agent.max_concurrency,
        status=agent.status,
        health=health,
        **summarise(totals, now=now),
    )


# --- retention -----------------------------------------------------------------------------


async def prune_buckets(
    session: AsyncSession,
    *,
    now: datetime,
    minute_retention_hours: int,
    hour_retention_days: int,
    limit: int = 5000,
) -> int:
    """Delete up to ``limit`` expired or orphaned buckets; the count deleted.

    Minute buckets older than the minute retention, hour buckets older than the
    hour retention, and buckets of deleted agents. Idempotent; run it until it
    returns less than ``limit``.
    """
    minute_cutoff = now - timedelta(hours=minute_retention_hours)
    hour_cutoff = now - timedelta(days=hour_retention_days)
    expired = (
        select(*_KEY)
        .where(
            ((_T.c.period == MINUTE) & (_T.c.bucket_start < minute_cutoff))
            | ((_T.c.period == HOUR) & (_T.c.bucket_start < hour_cutoff))
            | _T.c.agent_id.not_in(select(Agent.id))
        )
        .limit(limit)
    )
    result = await session.execute(
        delete(AgentMetricBucket)
        .where(tuple_(*_KEY).in_(expired))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- Prometheus --------------------------------------------------------------------------


class AgentSeries:
    """The per-agent Prometheus series of one app, with a bounded label set.

    An agent gets its own ``agent`` label (its name) if fewer than
    ``max_labels`` agents have one in this process; otherwise ``_other``. A
    label, once given, is kept until the process restarts.
    """

    def __init__(self, metrics: Metrics, *, max_labels: int) -> None:
        self.metrics = metrics
        self.max_labels = max_labels
        self._labels: dict[str, str] = {}  # agent id -> label
        self._named = 0
        self._load_labels: set[str] = set()

    def label(self, agent_id: str, name: str) -> str:
        known = self._labels.get(agent_id)
        if known is not None:
            return known
        if self._named < self.max_labels:
            label = name
            self._named += 1
        else:
            label = OTHER_LABEL
        self._labels[agent_id] = label
        return label

    async def label_for(self, session: AsyncSession, agent_id: str) -> str:
        """The label of ``agent_id``; looks its name up once per process."""
        known = self._labels.get(agent_id)
        if known is not None:
            return known
        name = await session.scalar(select(Agent.name).where(Agent.id == agent_id))
        return self.label(agent_id, name or agent_id)

    def observe_many(self, outcomes: Sequence[tuple[str, bool, float]]) -> None:
        """Outcomes as (label, success, latency): counted per series, each series
        looked up once (a commit holds hundreds of a few agents)."""
        counts: dict[tuple[str, bool], int] = {}
        latencies: dict[str, Any] = {}
        for label, success, latency in outcomes:
            counts[(label, success)] = counts.get((label, success), 0) + 1
            histogram = latencies.get(label)
            if histogram is None:
                histogram = latencies[label] = self.metrics.agent_task_latency.labels(label)
            histogram.observe(latency)
        for (label, success), count in counts.items():
            self.metrics.agent_tasks.labels(label, "success" if success else "failure").inc(count)

    def set_loads(self, agents: Sequence[tuple[str, str, int]]) -> None:
        """Set ``ymera_agent_load`` from (id, name, current load) of every agent."""
        loads: dict[str, float] = {}
        for agent_id, name, load in agents:
            label = self.label(agent_id, name)
            loads[label] = loads.get(label, 0) + load
        gauge = self.metrics.agent_load
        for label, value in loads.items():
            gauge.labels(label).set(value)
        for label in self._load_labels - loads.keys():
            gauge.remove(label)  # the agent was deleted
        self._load_labels = set(loads)


_SERIES: weakref.WeakKeyDictionary[Database, AgentSeries] = weakref.WeakKeyDictionary()
_PENDING = "ymera_agent_observations"


def bind_series(db: Database, series: AgentSeries) -> None:
    """Send the outcomes recorded through ``db``'s sessions to ``series``."""
    _SERIES[db] = series


def series_of(db: Database) -> AgentSeries | None:
    return _SERIES.get(db)


def _series_for(session: AsyncSession | Session) -> AgentSeries | None:
    db = session.info.get(DB_KEY)
    return _SERIES.get(db) if isinstance(db, Database) else None


@sa_event.listens_for(Session, "after_commit")
def _publish_observations(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    series = _series_for(session) if pending else None
    if series is None or not pending:
        return
    series.observe_many(pending)


@sa_event.listens_for(Session, "after_rollback")
def _drop_metric_buffer(session: Session) -> None:
    session.info.pop(_BUFFER, None)


@sa_event.listens_for(Session, "after_rollback")
def _drop_observations(session: Session) -> None:
    session.info.pop(_PENDING, None)


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_observations_soft(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_BUFFER, None)

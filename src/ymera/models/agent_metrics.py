"""Per-agent metric buckets and active health-check state.

``agent_metric_buckets`` holds counters per (agent, period, bucket start, task
type), written by one upsert per task outcome or feedback: a minute row and an
hour row at once. Windows up to the minute retention are summed from minute
rows, longer ones from hour rows. There is no foreign key to ``agents`` on
purpose: an outcome recorded while its agent is being deleted must not fail the
task engine's transaction; the upkeep loop removes orphaned rows.

``agent_health`` is the outlier-ejection state of each http/a2a agent, shared by
every replica (the probe loop leases a row while it probes that agent).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ymera.db.base import Base

# Latency histogram: upper bounds 1 ms x sqrt(2)^k for k = 0..47 (1 ms to ~3.3 h),
# plus an overflow bucket. Bucket i counts latencies in (bound[i-1], bound[i]].
LATENCY_BOUNDS: tuple[float, ...] = tuple(0.001 * 2 ** (k / 2) for k in range(48))
HISTOGRAM_COLUMNS: tuple[str, ...] = tuple(f"h{i:02d}" for i in range(len(LATENCY_BOUNDS) + 1))

MINUTE = 60
HOUR = 3600


class AgentMetricBucket(Base):
    __tablename__ = "agent_metric_buckets"
    __table_args__ = (Index("ix_agent_metric_buckets_period_start", "period", "bucket_start"),)

    agent_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    period: Mapped[int] = mapped_column(Integer, primary_key=True)  # seconds: 60 or 3600
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    task_type: Mapped[str] = mapped_column(String(100), primary_key=True)  # "" = none given

    successes: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    latency_sum: Mapped[float] = mapped_column(Float, default=0.0)
    quality_sum: Mapped[float] = mapped_column(Float, default=0.0)
    quality_count: Mapped[int] = mapped_column(Integer, default=0)

    h00: Mapped[int] = mapped_column(Integer, default=0)
    h01: Mapped[int] = mapped_column(Integer, default=0)
    h02: Mapped[int] = mapped_column(Integer, default=0)
    h03: Mapped[int] = mapped_column(Integer, default=0)
    h04: Mapped[int] = mapped_column(Integer, default=0)
    h05: Mapped[int] = mapped_column(Integer, default=0)
    h06: Mapped[int] = mapped_column(Integer, default=0)
    h07: Mapped[int] = mapped_column(Integer, default=0)
    h08: Mapped[int] = mapped_column(Integer, default=0)
    h09: Mapped[int] = mapped_column(Integer, default=0)
    h10: Mapped[int] = mapped_column(Integer, default=0)
    h11: Mapped[int] = mapped_column(Integer, default=0)
    h12: Mapped[int] = mapped_column(Integer, default=0)
    h13: Mapped[int] = mapped_column(Integer, default=0)
    h14: Mapped[int] = mapped_column(Integer, default=0)
    h15: Mapped[int] = mapped_column(Integer, default=0)
    h16: Mapped[int] = mapped_column(Integer, default=0)
    h17: Mapped[int] = mapped_column(Integer, default=0)
    h18: Mapped[int] = mapped_column(Integer, default=0)
    h19: Mapped[int] = mapped_column(Integer, default=0)
    h20: Mapped[int] = mapped_column(Integer, default=0)
    h21: Mapped[int] = mapped_column(Integer, default=0)
    h22: Mapped[int] = mapped_column(Integer, default=0)
    h23: Mapped[int] = mapped_column(Integer, default=0)
    h24: Mapped[int] = mapped_column(Integer, default=0)
    h25: Mapped[int] = mapped_column(Integer, default=0)
    h26: Mapped[int] = mapped_column(Integer, default=0)
    h27: Mapped[int] = mapped_column(Integer, default=0)
    h28: Mapped[int] = mapped_column(Integer, default=0)
    h29: Mapped[int] = mapped_column(Integer, default=0)
    h30: Mapped[int] = mapped_column(Integer, default=0)
    h31: Mapped[int] = mapped_column(Integer, default=0)
    h32: Mapped[int] = mapped_column(Integer, default=0)
    h33: Mapped[int] = mapped_column(Integer, default=0)
    h34: Mapped[int] = mapped_column(Integer, default=0)
    h35: Mapped[int] = mapped_column(Integer, default=0)
    h36: Mapped[int] = mapped_column(Integer, default=0)
    h37: Mapped[int] = mapped_column(Integer, default=0)
    h38: Mapped[int] = mapped_column(Integer, default=0)
    h39: Mapped[int] = mapped_column(Integer, default=0)
    h40: Mapped[int] = mapped_column(Integer, default=0)
    h41: Mapped[int] = mapped_column(Integer, default=0)
    h42: Mapped[int] = mapped_column(Integer, default=0)
    h43: Mapped[int] = mapped_column(Integer, default=0)
    h44: Mapped[int] = mapped_column(Integer, default=0)
    h45: Mapped[int] = mapped_column(Integer, default=0)
    h46: Mapped[int] = mapped_column(Integer, default=0)
    h47: Mapped[int] = mapped_column(Integer, default=0)
    h48: Mapped[int] = mapped_column(Integer, default=0)  # overflow: above the last bound


class AgentHealth(Base):
    """Active health-check and outlier-ejection state of one http/a2a agent."""

    __tablename__ = "agent_health"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    times_ejected: Mapped[int] = mapped_column(Integer, default=0)
    ejected_until: Mapped[datetime | None] = mapped_column(default=None)
    # The ejection ran out: the next probe decides (success re-admits, failure re-ejects).
    probing: Mapped[bool] = mapped_column(Boolean, default=False)
    # Start of the current healthy stretch; the ejection multiplier decays during it.
    healthy_since: Mapped[datetime | None] = mapped_column(default=None)

    next_probe_at: Mapped[datetime] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)

    last_probe_at: Mapped[datetime | None] = mapped_column(default=None)
    last_probe_ok: Mapped[bool | None] = mapped_column(Boolean, default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    last_latency_seconds: Mapped[float | None] = mapped_column(Float, default=None)


assert all(name in AgentMetricBucket.__table__.c for name in HISTOGRAM_COLUMNS), (
    "one histogram column per latency bucket"
)

"""Routing policies and the learning engine's persisted statistics.

``routing_policies``: one row per scope, ``*`` (global) or a task type.
``learning_stats``: per (agent, task type) forward-decayed sums (see
``ymera.routing.learning.service``): every outcome is an additive upsert, so
concurrent reports (and replicas) never overwrite each other, and the
discount is applied when the sums are read. No foreign key to agents (as
with metric buckets: an outcome recorded while its agent is deleted must not
fail the task engine's transaction).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ymera.db.base import Base, JSONType


class RoutingPolicy(Base):
    __tablename__ = "routing_policies"

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)  # "*" or a task type
    strategy: Mapped[str] = mapped_column(String(40))
    mode: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class LearningStat(Base):
    __tablename__ = "learning_stats"

    agent_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    era: Mapped[int] = mapped_column(Integer, default=0)
    n: Mapped[int] = mapped_column(Integer, default=0)
    s: Mapped[float] = mapped_column(Float, default=0.0)
    f: Mapped[float] = mapped_column(Float, default=0.0)
    ln_n: Mapped[float] = mapped_column(Float, default=0.0)
    ln_sum: Mapped[float] = mapped_column(Float, default=0.0)
    ln_sq: Mapped[float] = mapped_column(Float, default=0.0)
    fb_n: Mapped[float] = mapped_column(Float, default=0.0)
    fb_sum: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime]

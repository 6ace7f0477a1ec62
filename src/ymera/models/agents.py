from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ymera.db.base import Base, IdMixin, JSONType, TimestampMixin


class Agent(IdMixin, TimestampMixin, Base):
    """A registered agent. Capabilities and tags are mirrored into child tables so
    list filters use indexes; the JSON copy on the row is what the API returns."""

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_type_status", "type", "status"),)

    name: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text, default="")
    capabilities: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=1)
    connection_mode: Mapped[str] = mapped_column(String(10), default="worker")
    endpoint_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    learning_mode: Mapped[str | None] = mapped_column(String(20), default=None)
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )

    status: Mapped[str] = mapped_column(String(10), default="OFFLINE", index=True)
    status_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    status_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    current_load: Mapped[int] = mapped_column(Integer, default=0)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    connected_replica: Mapped[str | None] = mapped_column(String(64), default=None)


class AgentCapability(Base):
    __tablename__ = "agent_capabilities"
    __table_args__ = (Index("ix_agent_capabilities_name", "name", "proficiency"),)

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    proficiency: Mapped[float] = mapped_column(Float)


class AgentTag(Base):
    __tablename__ = "agent_tags"
    __table_args__ = (Index("ix_agent_tags_tag", "tag"),)

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)

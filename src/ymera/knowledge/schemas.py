"""Knowledge base schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["SUCCEEDED", "FAILED", "DEAD", "CANCELLED"]


class ExperienceIn(BaseModel):
    """An experience added by hand (by a person or an agent)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    task_type: str = Field(min_length=1, max_length=100)
    summary: str = Field(min_length=1, max_length=20_000, description="What was asked or done.")
    outcome: Outcome | None = None
    notes: str = Field(default="", max_length=20_000, description="What was learned.")
    agent_id: str | None = Field(
        default=None, min_length=1, max_length=36, description="An agent key: its own agent."
    )
    task_id: str | None = Field(default=None, min_length=1, max_length=36)


class ExperienceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    task_type: str
    summary: str
    outcome: str | None
    agent_id: str | None
    task_id: str | None
    notes: str
    source: str = Field(description="task (recorded when a task ended), user or agent.")
    created_by: str | None
    created_at: datetime
    score: float | None = Field(
        default=None, description="Relevance in [0, 1] (searches only); higher is better."
    )


class SemanticStatus(BaseModel):
    available: bool
    enabled: bool
    model: str | None
    weight: float
    reason: str | None = Field(description="Why semantic ranking is off, when it is.")


class KnowledgeStatus(BaseModel):
    text_search: str = Field(description="`sqlite-fts5` or `postgresql-fts`.")
    ranking: Literal["text", "hybrid"]
    record_tasks: bool
    semantic: SemanticStatus
    entries: int
    embedded: int

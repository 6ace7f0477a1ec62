from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int = Field(description="Position in the global event stream; the SSE `id`.")
    type: str = Field(examples=["user.created"])
    resource_type: str
    resource_id: str
    actor: str | None = None
    data: dict[str, Any]
    created_at: datetime


class EventPage(BaseModel):
    items: list[EventOut]
    next_after: int | None = Field(
        default=None, description="Pass as `after` for the next page; null when caught up."
    )

"""Response bodies of the Files API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Attachment(BaseModel):
    """Something a file is attached to."""

    type: str = Field(description="`task`, `chat_message` or `workspace`.")
    id: str


class FileOut(BaseModel):
    """An uploaded file's metadata (the body: `GET /api/v1/files/{id}/content`)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str = Field(description="The sanitised name given at upload.")
    content_type: str = Field(description="Sniffed from the first bytes, not the client's.")
    size: int = Field(description="Length in bytes.")
    sha256: str = Field(description="SHA-256 of the body (hex); also the download's ETag.")
    owner_id: str = Field(description="`user:<id>` or `agent:<id>`.")
    created_at: datetime
    expires_at: datetime | None = Field(
        default=None, description="When a temporary file (`ttl_seconds`) stops being served."
    )
    tags: list[str]
    attached_to: list[Attachment] = Field(
        default_factory=list,
        description="What references the file: tasks, chat messages, workspaces.",
    )

"""Request and response bodies of the Chat API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ymera.agents.schemas import AgentType

SessionStatus = Literal["active", "archived"]


class UserRef(BaseModel):
    """A user, by id or username."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=100)


class AgentRef(BaseModel):
    """An agent, by id or name."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, max_length=100)


ParticipantRef = UserRef | AgentRef


class SessionCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    participants: list[ParticipantRef] = Field(
        default_factory=list,
        max_length=100,
        description="Besides the creator, who is added at once.",
    )


class ParticipantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    participant_id: str = Field(description="`user:<id>` or `agent:<id>`.")
    kind: Literal["user", "agent"]
    name: str
    added_at: datetime


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    status: SessionStatus
    created_by: str
    last_seq: int = Field(description="The sequence number of the session's latest message.")
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    participants: list[ParticipantOut] = Field(default_factory=list)


class AddressedTo(BaseModel):
    """Who should answer: one agent by name (or id), or an agent that routing picks
    by type and/or capabilities (none of them: any agent that takes `chat` tasks)."""

    agent: str | None = Field(default=None, min_length=1, max_length=100)
    agent_type: AgentType | None = None
    capabilities: list[str] = Field(default_factory=list, max_length=20)


class MessageCreate(BaseModel):
    content: str = Field(
        min_length=1, max_length=1_000_000, description="At most `YMERA_CHAT__MAX_MESSAGE_CHARS`."
    )
    file_ids: list[str] = Field(default_factory=list, max_length=20)
    to: AddressedTo | None = Field(
        default=None, description="Ask an agent: the message becomes a `chat` task."
    )


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    session_id: str
    seq: int = Field(description="1, 2, 3... per session, assigned by the database, no gaps.")
    sender_id: str
    kind: Literal["message", "agent_reply", "agent_error"]
    content: str
    file_ids: list[str]
    addressed_to: dict[str, Any] | None
    task_id: str | None = Field(
        description="The `chat` task the message asked for, or the one a reply answers."
    )
    reply_to: str | None = Field(description="A reply: the id of the message it answers.")
    created_at: datetime

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from ymera.agents.status import AgentStatus

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
CAPABILITY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$"


_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_PORT = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"

# An http(s) URL. The schema states the scheme and a host that parses (the
# validator refuses other schemes, and hosts whose last label is numeric but not
# an IPv4 address), so a client generating from the schema sends acceptable URLs.
EndpointUrl = Annotated[
    AnyHttpUrl,
    WithJsonSchema(
        {
            "type": "string",
            "format": "uri",
            "minLength": 1,
            "maxLength": 2083,
            "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"
            + f"([A-Za-z0-9]([A-Za-z0-9.-]{{0,60}}[A-Za-z])?|{_OCTET}(\\.{_OCTET}){{3}})"
            + f"(:{_PORT})?"
            + r"(/[A-Za-z0-9._~/%-]*)?(\?[A-Za-z0-9=&._~%-]*)?$",
        }
    ),
]


class AgentType(StrEnum):
    DEVELOPER = "DEVELOPER"
    ANALYST = "ANALYST"
    TESTER = "TESTER"
    REVIEWER = "REVIEWER"
    RESEARCHER = "RESEARCHER"
    WRITER = "WRITER"
    ORCHESTRATOR = "ORCHESTRATOR"
    CUSTOM = "CUSTOM"


class ConnectionMode(StrEnum):
    WORKER = "worker"
    HTTP = "http"
    A2A = "a2a"


class LearningMode(StrEnum):
    PASSIVE = "PASSIVE"
    ACTIVE = "ACTIVE"
    REINFORCEMENT = "REINFORCEMENT"


class Capability(BaseModel):
    name: str = Field(pattern=CAPABILITY_PATTERN, examples=["python"])
    proficiency: float = Field(default=0.5, ge=0.0, le=1.0)


Tag = Annotated[str, StringConstraints(pattern=CAPABILITY_PATTERN)]


def _unique_capabilities(caps: list[Capability] | None) -> list[Capability] | None:
    """A capability listed twice keeps its last proficiency."""
    if caps is None:
        return None
    return list({cap.name: cap for cap in caps}.values())


class AgentCreate(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    type: AgentType = AgentType.CUSTOM
    description: str = Field(default="", max_length=2000)
    capabilities: list[Capability] = Field(default_factory=list, max_length=100)
    max_concurrency: int = Field(default=1, ge=1, le=10_000)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict)
    connection_mode: ConnectionMode = ConnectionMode.WORKER
    endpoint_url: EndpointUrl | None = Field(
        default=None, description="Required for http and a2a agents."
    )
    learning_mode: LearningMode | None = Field(
        default=None, description="null: inherit the server default."
    )

    _caps = field_validator("capabilities")(_unique_capabilities)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        return sorted(set(tags))


class AgentUpdate(BaseModel):
    description: str | None = Field(default=None, max_length=2000)
    type: AgentType | None = None
    capabilities: list[Capability] | None = Field(default=None, max_length=100)
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    metadata: dict[str, Any] | None = None
    endpoint_url: EndpointUrl | None = None
    learning_mode: LearningMode | None = None

    _caps = field_validator("capabilities")(_unique_capabilities)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str] | None) -> list[str] | None:
        return None if tags is None else sorted(set(tags))


class AgentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    type: AgentType
    description: str
    capabilities: list[Capability]
    max_concurrency: int
    tags: list[str]
    metadata: dict[str, Any] = Field(validation_alias="meta")
    connection_mode: ConnectionMode
    endpoint_url: str | None
    learning_mode: LearningMode | None
    owner_id: str | None
    status: AgentStatus
    status_reason: str | None
    status_changed_at: datetime | None
    current_load: int
    last_heartbeat_at: datetime | None
    created_at: datetime
    updated_at: datetime


class StatusChange(BaseModel):
    status: AgentStatus
    reason: str | None = Field(default=None, max_length=500)


class HeartbeatIn(BaseModel):
    load: int | None = Field(
        default=None, ge=0, le=100_000, description="Tasks in progress, if the agent knows."
    )
    message: str | None = Field(default=None, max_length=500)


class SortField(StrEnum):
    NAME = "name"
    NAME_DESC = "-name"
    CREATED = "created_at"
    CREATED_DESC = "-created_at"


class MetricsWindow(StrEnum):
    FIVE_MINUTES = "5m"
    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"

    @property
    def seconds(self) -> int:
        return {"5m": 300, "1h": 3600, "24h": 86_400, "7d": 604_800}[self.value]


class AgentHealthOut(BaseModel):
    """Active health-check state of an http/a2a agent."""

    model_config = ConfigDict(from_attributes=True)

    ejected: bool = Field(description="Ejected right now: not probed until `ejected_until`.")
    consecutive_failures: int = Field(description="Failed probes in a row.")
    times_ejected: int = Field(
        description="Ejection multiplier: the next ejection lasts base x (this + 1) seconds; "
        "decays while the agent stays healthy."
    )
    ejected_until: datetime | None
    last_probe_at: datetime | None
    last_probe_ok: bool | None
    last_error: str | None
    last_latency_seconds: float | None
    next_probe_at: datetime


class CircuitOut(BaseModel):
    state: str = Field(description="closed, open or half_open.")
    consecutive_failures: int
    retry_after_seconds: float = Field(description="Until a probe delivery is let through.")


class AgentMetricsOut(BaseModel):
    """An agent's performance over a window, summed from its metric buckets."""

    model_config = ConfigDict(from_attributes=True)

    agent_id: str
    name: str
    window: MetricsWindow
    task_type: str | None = Field(description="Only this task type (null: all).")
    since: datetime = Field(description="Start of the first bucket in the window.")
    until: datetime
    resolution_seconds: int = Field(description="Bucket size: 60, or 3600 for long windows.")
    tasks: int
    successes: int
    failures: int
    success_rate: float | None = Field(description="null without tasks.")
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None
    latency_mean_seconds: float | None
    throughput_per_minute: float = Field(description="Finished tasks per minute over the window.")
    current_load: int
    max_concurrency: int
    status: AgentStatus
    quality_score: float | None = Field(description="Mean feedback score (0..1); null without.")
    feedback_count: int
    health: AgentHealthOut | None = Field(
        description="Health checks and ejection (http and a2a agents only)."
    )
    circuit: CircuitOut | None = Field(
        default=None,
        description="The push circuit breaker as this replica sees it (http agents only).",
    )

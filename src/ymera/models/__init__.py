"""ORM models. Import every module here so Alembic sees the whole metadata."""

from ymera.models.agent_metrics import AgentHealth, AgentMetricBucket
from ymera.models.agents import Agent, AgentCapability, AgentTag
from ymera.models.auth import ApiKey, RefreshToken, User
from ymera.models.chat import ChatMessage, ChatParticipant, ChatSession, ChatTask, FileLink
from ymera.models.code import Edit, EditFile, EditSession, Workspace
from ymera.models.events import Event, EventSequencer
from ymera.models.files import File
from ymera.models.knowledge import Experience
from ymera.models.routing import LearningStat, RoutingPolicy
from ymera.models.tasks import Task, TaskRouting
from ymera.models.workflows import Workflow, WorkflowRun, WorkflowStep

__all__ = [
    "Agent",
    "AgentCapability",
    "AgentHealth",
    "AgentMetricBucket",
    "AgentTag",
    "ApiKey",
    "ChatMessage",
    "ChatParticipant",
    "ChatSession",
    "ChatTask",
    "Edit",
    "EditFile",
    "EditSession",
    "Event",
    "EventSequencer",
    "Experience",
    "File",
    "FileLink",
    "LearningStat",
    "RefreshToken",
    "RoutingPolicy",
    "Task",
    "TaskRouting",
    "User",
    "Workflow",
    "WorkflowRun",
    "WorkflowStep",
    "Workspace",
]

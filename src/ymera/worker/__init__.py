"""YMERA worker SDK: ``Worker``, ``TaskContext``, ``TaskFailed``; for code tasks,
``TaskWorkspace`` (``ctx.workspace``) and ``WorkspaceError``; the knowledge base,
``TaskKnowledge`` (``ctx.knowledge``) and ``KnowledgeError``."""

from ymera.worker.context import TaskContext
from ymera.worker.knowledge import KnowledgeError, TaskKnowledge
from ymera.worker.worker import Handler, TaskFailed, Worker, WorkerStopped
from ymera.worker.workspace import TaskWorkspace, WorkspaceError

__all__ = [
    "Handler",
    "KnowledgeError",
    "TaskContext",
    "TaskFailed",
    "TaskKnowledge",
    "TaskWorkspace",
    "Worker",
    "WorkerStopped",
    "WorkspaceError",
]

"""YMERA worker SDK: ``Worker``, ``TaskContext``, ``TaskFailed``; for code tasks,
``TaskWorkspace`` (``ctx.workspace``) and ``WorkspaceError``."""

from ymera.worker.context import TaskContext
from ymera.worker.worker import Handler, TaskFailed, Worker, WorkerStopped
from ymera.worker.workspace import TaskWorkspace, WorkspaceError

__all__ = [
    "Handler",
    "TaskContext",
    "TaskFailed",
    "TaskWorkspace",
    "Worker",
    "WorkerStopped",
    "WorkspaceError",
]

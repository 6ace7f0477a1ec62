"""YMERA worker SDK: ``Worker``, ``TaskContext``, ``TaskFailed``."""

from ymera.worker.context import TaskContext
from ymera.worker.worker import Handler, TaskFailed, Worker, WorkerStopped

__all__ = ["Handler", "TaskContext", "TaskFailed", "Worker", "WorkerStopped"]

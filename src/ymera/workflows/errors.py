"""Typed errors of the workflows domain (rendered as problem+json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ymera.errors import Conflict, NotFound, Unprocessable


@dataclass(frozen=True)
class DefinitionProblem:
    path: str  # JSON path in the definition, e.g. steps[1].branches[0].when
    message: str


class WorkflowInvalid(Unprocessable):
    """A definition that does not make sense: each problem names its JSON path."""

    code = "invalid_workflow"
    MAX_LISTED = 50

    def __init__(self, problems: list[DefinitionProblem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"{first.path}: {first.message}{more}",
            problems=[asdict(p) for p in problems[: self.MAX_LISTED]],
        )
        self.problems = problems


class WorkflowNotFound(NotFound):
    code = "workflow_not_found"


class RunNotFound(NotFound):
    code = "workflow_run_not_found"


class RunNotRetryable(Conflict):
    code = "workflow_run_not_retryable"


class RunFinished(Conflict):
    code = "workflow_run_finished"

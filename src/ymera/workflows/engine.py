"""The step rules: given a run's plan and the state of its rows, what happens
when a task ends, and what becomes runnable (or cancelled, or skipped) next.

Pure logic over plain attributes: no database, no clock, no I/O. The service
loads a run's rows, tells the engine what happened (:meth:`Engine.task_ended`),
asks it to :meth:`Engine.advance`, and then carries out the :class:`Outcome`
(submit the tasks of the steps that started, cancel the tasks of the steps that
were cancelled, record an event per transition) in the same transaction.

Semantics (docs/workflows.md):

- Top-level nodes start when every node in their ``depends_on`` has succeeded;
  when one of those failed (or was skipped) they are SKIPPED.
- SEQUENTIAL and PIPELINE run their steps one after another (a PIPELINE feeds
  each step the previous step's output); the first failure fails the group and
  skips the rest.
- PARALLEL starts every step; it succeeds once ``all`` / ``any`` / ``quorum``
  of them succeeded and fails as soon as that can no longer happen; either way
  the steps still running are cancelled.
- CONDITIONAL takes the first branch whose condition is true (or the default
  branch) and skips the others; no branch taken is a success with no output.
- CONSENSUS asks N distinct agents the same task and decides by majority on a
  field or by the best score. A vote answered by an agent that already voted is
  discarded and asked again of another agent.
- A step that fails runs its ``on_failure`` fallback, whose output stands in
  for the step's.
- ``fail_fast``: the first top-level failure fails the run and cancels the
  rest; ``continue``: the rest goes on, and the run fails at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from ymera.workflows.expressions import ExpressionError
from ymera.workflows.plan import Plan, PlanNode, TaskSpec, fallback_key, vote_key
from ymera.workflows.schemas import FailurePolicy, Strategy
from ymera.workflows.status import (
    STEP_FINAL,
    RunStatus,
    StepStatus,
    check_step_transition,
)

S = StepStatus
TASK_ENDS = frozenset({"SUCCEEDED", "FAILED", "DEAD", "CANCELLED"})


class Row(Protocol):
    """What the engine reads and changes of a step row (the ORM row satisfies it)."""

    key: str
    kind: str
    status: str
    input: dict[str, Any] | None
    output: Any
    error: dict[str, Any] | None
    detail: dict[str, Any]
    task_id: str | None
    agent_id: str | None


@dataclass(frozen=True)
class Start:
    """A row whose task must be submitted now."""

    key: str
    spec: TaskSpec
    input: dict[str, Any]
    # Agents that must not take it (a CONSENSUS vote asked again); the service
    # adds the agents holding the other votes' tasks.
    excluded_agents: tuple[str, ...] = ()
    consensus: str | None = None


@dataclass
class Outcome:
    starts: list[Start] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)  # keys of rows whose task to cancel
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
    discarded: list[tuple[str, str | None]] = field(default_factory=list)  # (vote key, agent)
    run: tuple[RunStatus, Any, dict[str, Any] | None] | None = None


def _task_error(status: str, error: dict[str, Any] | None) -> dict[str, Any]:
    base = dict(error or {})
    base.setdefault("message", f"task {status.lower()}")
    base["task_status"] = status
    return base


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class Engine:
    def __init__(
        self,
        plan: Plan,
        rows: dict[str, Row],
        *,
        run_id: str,
        run_input: dict[str, Any],
        run_status: str = RunStatus.RUNNING,
        agent_counts: dict[str, int] | None = None,
    ) -> None:
        self.plan = plan
        # CONSENSUS node -> how many registered agents match its selector.
        self.agent_counts = agent_counts or {}
        self.rows = rows
        self.run_id = run_id
        self.run_input = run_input
        self.run_status = RunStatus(run_status)
        self.out = Outcome()

    # --- bookkeeping ------------------------------------------------------------------

    def _set(self, row: Row, target: StepStatus, **values: Any) -> None:
        current = S(row.status)
        check_step_transition(current, target)
        row.status = target.value
        for name, value in values.items():
            setattr(row, name, value)
        self.out.transitions.append((row.key, current.value, target.value))

    def _detail(self, row: Row, **values: Any) -> None:
        row.detail = {**(row.detail or {}), **values}  # reassigned: the ORM sees the change

    def _row_keys(self, node: PlanNode) -> list[str]:
        keys = [node.id]
        if node.fallback is not None:
            keys.append(fallback_key(node.id))
        if node.strategy == Strategy.CONSENSUS:
            keys.extend(vote_key(node.id, k) for k in range(1, node.agents + 1))
        return keys

    def _subtree_rows(self, node: PlanNode) -> list[Row]:
        return [self.rows[key] for n in node.subtree() for key in self._row_keys(n)]

    def context(self, **extra: Any) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        steps: dict[str, Any] = {}
        for key in self.plan.nodes:
            row = self.rows[key]
            if row.status == S.SUCCEEDED:
                outputs[key] = row.output
            steps[key] = {
                "status": row.status,
                "output": row.output,
                "error": row.error,
                "agent_id": row.agent_id,
            }
        return {
            "input": self.run_input,
            "outputs": outputs,
            "steps": steps,
            "run": {"id": self.run_id},
            "prev": None,
            "error": None,
            **extra,
        }

    # --- what happened ----------------------------------------------------------------

    def task_ended(
        self,
        key: str,
        *,
        task_id: str,
        status: str,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        agent_id: str | None,
    ) -> bool:
        """Record the end of the task of row ``key``. False (and nothing changes)
        when the row is not waiting for that task (stale, or already decided)."""
        row = self.rows.get(key)
        if (
            row is None
            or row.status != S.RUNNING
            or row.task_id != task_id
            or status not in TASK_ENDS
        ):
            return False
        succeeded = status == "SUCCEEDED"
        if row.kind == "vote":
            return self._vote_ended(row, succeeded, result, error, status, agent_id)
        if row.kind == "step":
            node = self.plan.nodes[key]
            if not succeeded and node.fallback is not None:
                fallback = self.rows[fallback_key(key)]
                if fallback.status == S.PENDING:
                    row.agent_id = agent_id
                    self._detail(row, primary_failed=True, primary_error=_task_error(status, error))
                    return True
        if succeeded:
            self._set(row, S.SUCCEEDED, output=result, agent_id=agent_id, error=None)
        else:
            self._set(row, S.FAILED, error=_task_error(status, error), agent_id=agent_id)
        return True

    def _vote_ended(
        self,
        row: Row,
        succeeded: bool,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        status: str,
        agent_id: str | None,
    ) -> bool:
        parent = self.plan.nodes[row.key.rsplit(".", 1)[0]]
        votes = [self.rows[vote_key(parent.id, k)] for k in range(1, parent.agents + 1)]
        if not succeeded:
            self._set(row, S.FAILED, error=_task_error(status, error), agent_id=agent_id)
            return True
        voted = {v.agent_id for v in votes if v is not row and v.status == S.SUCCEEDED}
        if agent_id is None or agent_id not in voted:
            self._set(row, S.SUCCEEDED, output=result, agent_id=agent_id, error=None)
            return True
        # The same agent answered twice: this answer does not count; ask another agent.
        discarded = list((row.detail or {}).get("discarded", []))
        discarded.append({"task_id": row.task_id, "agent_id": agent_id})
        self._detail(row, discarded=discarded)
        self.out.discarded.append((row.key, agent_id))
        total = sum(len((v.detail or {}).get("discarded", [])) for v in votes)
        if total > parent.agents:
            self._set(
                row,
                S.FAILED,
                error={
                    "message": "no agent that had not voted yet answered this vote",
                    "type": "no_distinct_agent",
                },
            )
            return True
        assert parent.task is not None
        excluded = sorted(str(a) for a in voted | {agent_id} if a)
        self.out.starts.append(
            Start(row.key, parent.task, dict(row.input or {}), tuple(excluded), parent.id)
        )
        return True

    def fail_row(self, key: str, error: dict[str, Any]) -> None:
        """A row could not start (its task could not be submitted, say)."""
        row = self.rows[key]
        if row.status == S.PENDING:
            self._set(row, S.RUNNING)
        if row.status == S.RUNNING:
            self._set(row, S.FAILED, error=error)

    # --- what happens next ------------------------------------------------------------

    def advance(self) -> Outcome:
        """Start what can start, settle what is decided, and end the run when
        nothing is left. Call after :meth:`task_ended` (or to begin a run)."""
        if self.run_status != RunStatus.RUNNING:
            return self.out
        changed = True
        while changed:
            changed = False
            for root in self.plan.roots:
                changed |= self._drive_root(root)
        self._settle_run()
        return self.out

    def _drive_root(self, node: PlanNode) -> bool:
        row = self.rows[node.id]
        if row.status == S.PENDING:
            deps = [self.rows[d] for d in node.depends_on]
            blocked = [d for d in deps if d.status in STEP_FINAL and d.status != S.SUCCEEDED]
            if blocked:
                self._skip_subtree(node, reason=f"{blocked[0].key} did not succeed")
                return True
            if all(d.status == S.SUCCEEDED for d in deps):
                self._activate(node)
                return True
            return False
        return self._drive(node)

    def _activate(self, node: PlanNode, **extra: Any) -> None:
        row = self.rows[node.id]
        if node.is_step:
            assert node.task is not None
            self._start_task(row, node.task, extra)
            return
        self._set(row, S.RUNNING)
        self._drive(node)

    def _start_task(self, row: Row, spec: TaskSpec, extra: dict[str, Any]) -> None:
        self._set(row, S.RUNNING)
        try:
            task_input = self._render_input(spec, extra)
        except ExpressionError as exc:
            self._set(row, S.FAILED, error={"message": exc.message, "type": "expression"})
            return
        row.input = task_input
        self.out.starts.append(Start(row.key, spec, task_input))

    def _render_input(self, spec: TaskSpec, extra: dict[str, Any]) -> dict[str, Any]:
        if spec.input is None:
            default = extra.get("prev") if extra.get("prev") is not None else self.run_input
            return default if isinstance(default, dict) else {"value": default}
        value = spec.input.render(self.context(**extra))
        if not isinstance(value, dict):
            raise ExpressionError(
                f"the input template gave {type(value).__name__}, not an object"
                if value is not None
                else "the input template gave null, not an object"
            )
        return value

    def _drive(self, node: PlanNode) -> bool:
        row = self.rows[node.id]
        if row.status != S.RUNNING:
            return False
        if node.is_step:
            return self._drive_step(node, row)
        if node.strategy in (Strategy.SEQUENTIAL, Strategy.PIPELINE):
            return self._drive_sequence(
                node, row, node.children, pipeline=node.strategy == Strategy.PIPELINE
            )
        if node.strategy == Strategy.PARALLEL:
            return self._drive_parallel(node, row)
        if node.strategy == Strategy.CONDITIONAL:
            return self._drive_conditional(node, row)
        return self._drive_consensus(node, row)

    def _drive_step(self, node: PlanNode, row: Row) -> bool:
        if not (row.detail or {}).get("primary_failed") or node.fallback is None:
            return False  # its task is running
        fallback = self.rows[fallback_key(node.id)]
        if fallback.status == S.PENDING:
            self._start_task(fallback, node.fallback, {"error": row.detail.get("primary_error")})
            return True
        if fallback.status == S.RUNNING:
            return False
        if fallback.status == S.SUCCEEDED:
            self._detail(row, recovered=True)
            self._set(row, S.SUCCEEDED, output=fallback.output, error=None)
        else:
            error = dict(fallback.error or {})
            error["message"] = f"the step and its fallback failed: {error.get('message', '')}"
            error["primary_error"] = row.detail.get("primary_error")
            self._set(row, S.FAILED, error=error)
        return True

    def _drive_sequence(
        self, node: PlanNode, row: Row, children: list[PlanNode], *, pipeline: bool
    ) -> bool:
        changed = False
        prev: Any = None
        for i, child in enumerate(children):
            crow = self.rows[child.id]
            if crow.status == S.PENDING:
                self._activate(child, **({"prev": prev} if pipeline else {}))
                changed = True
            elif crow.status == S.RUNNING:
                changed |= self._drive(child)
            if crow.status == S.SUCCEEDED:
                prev = crow.output
                continue
            if crow.status == S.RUNNING:
                return changed
            for rest in children[i + 1 :]:
                self._skip_subtree(rest, reason=f"{child.id} did not succeed")
            self._finish_group(node, row, S.FAILED, error=self._child_error(child))
            return True
        output = prev
        if node.strategy == Strategy.CONDITIONAL:
            output = {"branch": row.detail.get("branch"), "output": prev}
        self._finish_group(node, row, S.SUCCEEDED, output=output)
        return True

    def _drive_parallel(self, node: PlanNode, row: Row) -> bool:
        changed = False
        for child in node.children:
            crow = self.rows[child.id]
            if crow.status == S.PENDING:
                self._activate(child)
                changed = True
            elif crow.status == S.RUNNING:
                changed |= self._drive(child)
        done = [c for c in node.children if self.rows[c.id].status == S.SUCCEEDED]
        active = [c for c in node.children if self.rows[c.id].status not in STEP_FINAL]
        need = {"all": len(node.children), "any": 1}.get(node.join.value, node.quorum)
        if len(done) >= need:
            for child in active:
                self._cancel_subtree(child)
            output = {c.id: self.rows[c.id].output for c in done}
            self._finish_group(node, row, S.SUCCEEDED, output=output)
            return True
        if len(done) + len(active) < need:
            for child in active:
                self._cancel_subtree(child)
            failed = next(
                c for c in node.children if self.rows[c.id].status in STEP_FINAL - {S.SUCCEEDED}
            )
            error = self._child_error(failed)
            if node.join.value != "all":
                error["message"] = (
                    f"join={node.join.value} needs {need} of {len(node.children)} steps to "
                    f"succeed; {len(done)} did: {error['message']}"
                )
            self._finish_group(node, row, S.FAILED, error=error)
            return True
        return changed

    def _drive_conditional(self, node: PlanNode, row: Row) -> bool:
        chose_now = "branch" not in (row.detail or {})
        if chose_now:
            chosen = None
            context = self.context()
            for branch in node.branches:
                try:
                    taken = branch.when is None or branch.when.test(context)
                except ExpressionError as exc:
                    self._detail(row, branch=None)
                    for b in node.branches:
                        for child in b.children:
                            self._skip_subtree(child, reason="the condition failed")
                    self._finish_group(
                        node, row, S.FAILED, error={"message": exc.message, "type": "expression"}
                    )
                    return True
                if taken:
                    chosen = branch
                    break
            self._detail(row, branch=chosen.name if chosen else None)
            for branch in node.branches:
                if branch is not chosen:
                    for child in branch.children:
                        self._skip_subtree(child, reason=f"branch {branch.name} not taken")
            if chosen is None:
                self._finish_group(node, row, S.SUCCEEDED, output={"branch": None, "output": None})
                return True
        name = row.detail.get("branch")
        branch = next(b for b in node.branches if b.name == name)
        return self._drive_sequence(node, row, branch.children, pipeline=False) or chose_now

    def _drive_consensus(self, node: PlanNode, row: Row) -> bool:
        assert node.task is not None
        votes = [self.rows[vote_key(node.id, k)] for k in range(1, node.agents + 1)]
        changed = False
        pending = [v for v in votes if v.status == S.PENDING]
        available = self.agent_counts.get(node.id)
        if len(pending) == len(votes) and available is not None and available < node.agents:
            for vote in votes:
                self._set(vote, S.SKIPPED)
            message = (
                f"CONSENSUS needs {node.agents} distinct agents; "
                f"{available} registered agent(s) match its selector"
            )
            self._finish_group(
                node, row, S.FAILED, error={"message": message, "type": "not_enough_agents"}
            )
            return True
        if pending:
            try:
                task_input = self._render_input(node.task, {})
            except ExpressionError as exc:
                for vote in votes:
                    if vote.status == S.PENDING:
                        self._set(vote, S.SKIPPED)
                self._finish_group(
                    node, row, S.FAILED, error={"message": exc.message, "type": "expression"}
                )
                return True
            for vote in pending:
                self._set(vote, S.RUNNING, input=task_input)
                self.out.starts.append(Start(vote.key, node.task, task_input, (), node.id))
            changed = True
        if any(v.status not in STEP_FINAL for v in votes):
            return changed
        self._decide(node, row, votes)
        return True

    def _decide(self, node: PlanNode, row: Row, votes: list[Row]) -> None:
        assert node.decide_field is not None
        ballots: list[dict[str, Any]] = []
        for k, vote in enumerate(votes, 1):
            ballot: dict[str, Any] = {"vote": k, "agent_id": vote.agent_id, "status": vote.status}
            if vote.status == S.SUCCEEDED:
                try:
                    ballot["value"] = node.decide_field.evaluate(vote.output or {})
                except ExpressionError as exc:
                    ballot["invalid"] = exc.message
            ballots.append(ballot)
        valid = [b for b in ballots if b["status"] == S.SUCCEEDED and "invalid" not in b]
        if node.decide_method == "majority":
            tally: dict[str, list[dict[str, Any]]] = {}
            for ballot in valid:
                tally.setdefault(_canonical(ballot["value"]), []).append(ballot)
            best = max(tally.values(), key=len, default=[])
            if len(best) * 2 <= node.agents:
                counts = {k: len(v) for k, v in tally.items()}
                self._finish_group(
                    node,
                    row,
                    S.FAILED,
                    error={
                        "message": f"no majority of the {node.agents} votes: {counts}",
                        "type": "no_consensus",
                        "votes": ballots,
                    },
                )
                return
            winner = best[0]
            won = _canonical(winner["value"])
            dissenters = [b["agent_id"] for b in valid if _canonical(b["value"]) != won]
        else:
            scored = [
                b
                for b in valid
                if isinstance(b["value"], int | float) and not isinstance(b["value"], bool)
            ]
            if not scored:
                self._finish_group(
                    node,
                    row,
                    S.FAILED,
                    error={
                        "message": "no vote had a numeric score",
                        "type": "no_consensus",
                        "votes": ballots,
                    },
                )
                return
            winner = max(scored, key=lambda b: (b["value"], -b["vote"]))
            best, dissenters = [winner], []
        output = {
            "method": node.decide_method,
            "value": winner["value"],
            "output": votes[winner["vote"] - 1].output,
            "agent_id": winner["agent_id"],
            "agreed": len(best),
            "dissenters": dissenters,
            "votes": ballots,
        }
        self._finish_group(node, row, S.SUCCEEDED, output=output)

    # --- endings ----------------------------------------------------------------------

    def _child_error(self, child: PlanNode) -> dict[str, Any]:
        crow = self.rows[child.id]
        inner = dict(crow.error or {})
        message = inner.get("message") or f"{child.id} {crow.status.lower()}"
        return {
            "message": f"{child.id}: {message}",
            "step": inner.get("step", child.id),
            "type": inner.get("type", "step_failed"),
        }

    def _finish_group(
        self,
        node: PlanNode,
        row: Row,
        status: StepStatus,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        if row.status == S.RUNNING:
            self._set(row, status, output=output, error=error)

    def _skip_subtree(self, node: PlanNode, *, reason: str) -> None:
        for row in self._subtree_rows(node):
            if row.status == S.PENDING:
                self._set(row, S.SKIPPED)
                self._detail(row, reason=reason)

    def _cancel_subtree(self, node: PlanNode, reason: str = "no longer needed") -> None:
        for row in self._subtree_rows(node):
            if row.status in STEP_FINAL:
                continue
            waiting = row.kind != "group" and not (row.detail or {}).get("primary_failed")
            if row.status == S.RUNNING and waiting and row.task_id:
                self.out.cancels.append(row.key)
            self._set(row, S.CANCELLED)
            self._detail(row, reason=reason)

    def cancel_run(self, reason: str) -> Outcome:
        """Cancel every step not yet final (and their tasks)."""
        for root in self.plan.roots:
            self._cancel_subtree(root, reason)
        self.run_status = RunStatus.CANCELLED
        return self.out

    def _settle_run(self) -> None:
        roots = [self.rows[r.id] for r in self.plan.roots]
        failed = [r for r in roots if r.status in (S.FAILED, S.CANCELLED)]
        if failed and self.plan.failure_policy == FailurePolicy.FAIL_FAST:
            for root in self.plan.roots:
                self._cancel_subtree(root, reason=f"the run failed ({failed[0].key})")
            self._end(RunStatus.FAILED, None, self._run_error(failed[0].key))
            return
        if any(r.status not in STEP_FINAL for r in roots):
            return
        not_ok = [r for r in roots if r.status != S.SUCCEEDED]
        if not_ok:
            first = next((r for r in not_ok if r.status == S.FAILED), not_ok[0])
            self._end(RunStatus.FAILED, None, self._run_error(first.key))
            return
        if self.plan.output is not None:
            try:
                output = self.plan.output.render(self.context())
            except ExpressionError as exc:
                error = {"message": f"output: {exc.message}", "type": "expression"}
                self._end(RunStatus.FAILED, None, error)
                return
        else:
            output = {key: self.rows[key].output for key in self.plan.sinks()}
        self._end(RunStatus.SUCCEEDED, output, None)

    def _run_error(self, key: str) -> dict[str, Any]:
        row = self.rows[key]
        error = dict(row.error or {})
        failed_step = error.get("step", key)
        return {
            "message": f"step {key} failed: {error.get('message', row.status.lower())}",
            "step": failed_step,
            "type": error.get("type", "step_failed"),
        }

    def _end(self, status: RunStatus, output: Any, error: dict[str, Any] | None) -> None:
        self.run_status = status
        self.out.run = (status, output, error)


def reset_for_retry(plan: Plan, rows: dict[str, Row]) -> list[tuple[str, str, str]]:
    """Put every step that did not succeed back to PENDING (what succeeded is
    kept: a CONSENSUS asks again only the votes that did not succeed; a step that
    failed runs again, then its fallback if it fails again). Returns the transitions."""
    transitions: list[tuple[str, str, str]] = []
    again: set[str] = set()
    for node in plan.nodes.values():
        if rows[node.id].status != S.SUCCEEDED:
            again.add(node.id)
            if node.fallback is not None:
                again.add(fallback_key(node.id))
            if node.strategy == Strategy.CONSENSUS:
                again.update(vote_key(node.id, k) for k in range(1, node.agents + 1))
    for key in sorted(again):
        row = rows[key]
        if row.status in (S.FAILED, S.SKIPPED, S.CANCELLED):
            current = row.status
            check_step_transition(S(current), S.PENDING)
            row.status = S.PENDING.value
            row.output = None
            row.error = None
            row.detail = {}
            row.task_id = None
            row.agent_id = None
            transitions.append((key, current, S.PENDING.value))
    return transitions

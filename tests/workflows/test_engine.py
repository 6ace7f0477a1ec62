"""The step rules, without a database: a simulated run of each strategy."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ymera.workflows.engine import Engine, Outcome, reset_for_retry
from ymera.workflows.plan import compile_plan
from ymera.workflows.schemas import WorkflowCreate

_ids = itertools.count(1)


@dataclass
class FakeRow:
    key: str
    kind: str
    status: str = "PENDING"
    input: dict[str, Any] | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    agent_id: str | None = None


class Sim:
    """A run of a definition: starts hand out task ids; finish() ends a task."""

    def __init__(self, steps: list[dict[str, Any]], *, run_input: Any = None, **extra: Any):
        spec = WorkflowCreate.model_validate({"name": "wf", "steps": steps, **extra})
        self.plan = compile_plan(spec)
        self.rows = {r.key: FakeRow(r.key, r.kind) for r in self.plan.rows()}
        self.input = run_input or {}
        self.status = "RUNNING"
        self.output: Any = None
        self.error: dict[str, Any] | None = None
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.excluded: dict[str, tuple[str, ...]] = {}
        self.agent_counts: dict[str, int] = {}

    def _engine(self) -> Engine:
        return Engine(
            self.plan,
            dict(self.rows),  # type: ignore[arg-type]
            run_id="run-1",
            run_input=self.input,
            run_status=self.status,
            agent_counts=self.agent_counts,
        )

    def _apply(self, out: Outcome) -> Outcome:
        for start in out.starts:
            self.rows[start.key].task_id = f"t{next(_ids)}"
            self.started.append(start.key)
            if start.excluded_agents:
                self.excluded[start.key] = start.excluded_agents
        self.cancelled += out.cancels
        if out.run is not None:
            status, self.output, self.error = out.run
            self.status = status.value
        return out

    def start(self) -> Outcome:
        return self._apply(self._engine().advance())

    def finish(
        self, key: str, status: str = "SUCCEEDED", result: Any = None, agent: str | None = None
    ) -> Outcome:
        engine = self._engine()
        row = self.rows[key]
        assert row.task_id, f"{key} has no task"
        error = None if status == "SUCCEEDED" else {"message": f"{key} broke"}
        assert engine.task_ended(
            key,
            task_id=row.task_id,
            status=status,
            result=result if result is not None else {"from": key},
            error=error,
            agent_id=agent or f"agent-{key}",
        )
        return self._apply(engine.advance())

    def cancel(self) -> Outcome:
        engine = self._engine()
        out = engine.cancel_run("stop")
        self.status = "CANCELLED"
        return self._apply(out)

    def retry(self) -> Outcome:
        reset_for_retry(self.plan, self.rows)  # type: ignore[arg-type]
        self.status = "RUNNING"
        return self.start()

    def states(self) -> dict[str, str]:
        return {k: r.status for k, r in self.rows.items()}


def step(id: str, **extra: Any) -> dict[str, Any]:
    return {"id": id, "task_type": "work", **extra}


def test_dependencies_run_in_order_and_the_output_is_the_sinks() -> None:
    sim = Sim([step("a"), step("b", depends_on=["a"]), step("c", depends_on=["a"])])
    sim.start()
    assert sim.started == ["a"]
    sim.finish("a", result={"n": 1})
    assert sim.started == ["a", "b", "c"]
    sim.finish("b")
    assert sim.status == "RUNNING"
    sim.finish("c", result={"n": 3})
    assert sim.status == "SUCCEEDED"
    assert sim.output == {"b": {"from": "b"}, "c": {"n": 3}}


def test_sequential_and_pipeline() -> None:
    sim = Sim(
        [
            {
                "id": "pipe",
                "strategy": "PIPELINE",
                "steps": [step("p1"), step("p2"), step("p3", input={"wrapped": "${prev}"})],
            }
        ],
        run_input={"text": "hi"},
    )
    sim.start()
    assert sim.rows["p1"].input == {"text": "hi"}
    sim.finish("p1", result={"text": "HI"})
    assert sim.rows["p2"].input == {"text": "HI"}
    sim.finish("p2", result={"text": "HI!"})
    assert sim.rows["p3"].input == {"wrapped": {"text": "HI!"}}
    sim.finish("p3", result={"done": True})
    assert sim.status == "SUCCEEDED"
    assert sim.rows["pipe"].output == {"done": True}


def test_a_failure_in_a_sequence_skips_the_rest_and_fails_fast() -> None:
    sim = Sim(
        [
            {"id": "seq", "strategy": "SEQUENTIAL", "steps": [step("s1"), step("s2")]},
            step("other"),
        ]
    )
    sim.start()
    assert sorted(sim.started) == ["other", "s1"]
    sim.finish("s1", "DEAD")
    assert sim.states() == {
        "seq": "FAILED",
        "s1": "FAILED",
        "s2": "SKIPPED",
        "other": "CANCELLED",
    }
    assert sim.cancelled == ["other"]
    assert sim.status == "FAILED"
    assert sim.error == {
        "message": "step seq failed: s1: s1 broke",
        "step": "s1",
        "type": "step_failed",
    }


def test_continue_lets_independent_work_finish_and_skips_dependents() -> None:
    sim = Sim(
        [step("a"), step("b", depends_on=["a"]), step("c")],
        failure_policy="continue",
    )
    sim.start()
    sim.finish("a", "FAILED")
    assert sim.states()["b"] == "SKIPPED"
    assert sim.status == "RUNNING"
    sim.finish("c")
    assert sim.status == "FAILED"
    assert sim.error is not None
    assert sim.error["step"] == "a"


def test_parallel_joins() -> None:
    group = {"id": "p", "strategy": "PARALLEL", "steps": [step("x"), step("y"), step("z")]}
    # all: one failure fails the group and cancels the others
    sim = Sim([group])
    sim.start()
    sim.finish("x")
    sim.finish("y", "FAILED")
    assert sim.states() == {"p": "FAILED", "x": "SUCCEEDED", "y": "FAILED", "z": "CANCELLED"}
    assert sim.cancelled == ["z"]
    # any: the first success wins
    sim = Sim([{**group, "join": "any"}])
    sim.start()
    sim.finish("y", "FAILED")
    assert sim.status == "RUNNING"
    sim.finish("z", result={"z": 1})
    assert sim.states()["p"] == "SUCCEEDED"
    assert sorted(sim.cancelled) == ["x"]
    assert sim.output == {"p": {"z": {"z": 1}}}
    # quorum 2: fails once two successes are out of reach
    sim = Sim([{**group, "join": "quorum", "quorum": 2}])
    sim.start()
    sim.finish("x", "FAILED")
    assert sim.status == "RUNNING"
    sim.finish("y", "FAILED")
    assert sim.states()["p"] == "FAILED"
    assert sim.cancelled == ["z"]
    assert "join=quorum needs 2 of 3" in (sim.rows["p"].error or {})["message"]
    sim = Sim([{**group, "join": "quorum", "quorum": 2}])
    sim.start()
    sim.finish("x")
    sim.finish("z")
    assert sim.status == "SUCCEEDED"
    assert sim.cancelled == ["y"]


def conditional(when_merge: str) -> list[dict[str, Any]]:
    return [
        step("check"),
        {
            "id": "decide",
            "depends_on": ["check"],
            "strategy": "CONDITIONAL",
            "branches": [
                {"name": "merge", "when": when_merge, "steps": [step("merge")]},
                {"name": "rework", "when": "outputs.check.score < `0.5`", "steps": [step("fix")]},
            ],
        },
    ]


def test_conditional_takes_the_first_true_branch_or_none() -> None:
    sim = Sim(conditional("outputs.check.ok"))
    sim.start()
    sim.finish("check", result={"ok": True, "score": 0.9})
    assert sim.states() == {
        "check": "SUCCEEDED",
        "decide": "RUNNING",
        "merge": "RUNNING",
        "fix": "SKIPPED",
    }
    sim.finish("merge", result={"merged": True})
    assert sim.rows["decide"].output == {"branch": "merge", "output": {"merged": True}}

    sim = Sim(conditional("outputs.check.ok"))
    sim.start()
    sim.finish("check", result={"ok": False, "score": 0.1})
    assert sim.rows["decide"].detail["branch"] == "rework"

    sim = Sim(conditional("outputs.check.ok"))
    sim.start()
    sim.finish("check", result={"ok": False, "score": 0.7})
    assert sim.status == "SUCCEEDED"
    assert sim.rows["decide"].output == {"branch": None, "output": None}


def test_a_condition_that_fails_to_evaluate_fails_the_group() -> None:
    sim = Sim(conditional("length(outputs.check.score) > `1`"))
    sim.start()
    sim.finish("check", result={"ok": True, "score": 0.9})
    assert sim.states()["decide"] == "FAILED"
    assert sim.rows["decide"].error["type"] == "expression"  # type: ignore[index]


def consensus(method: str = "majority", field: str = "verdict", n: int = 3) -> dict[str, Any]:
    return {
        "id": "vote",
        "strategy": "CONSENSUS",
        "task": {"task_type": "judge"},
        "agents": n,
        "decide": {"method": method, "field": field},
    }


def test_consensus_majority_with_a_dissenter() -> None:
    sim = Sim([consensus()])
    sim.start()
    assert sim.started == ["vote.1", "vote.2", "vote.3"]
    sim.finish("vote.1", result={"verdict": "approve"}, agent="a1")
    sim.finish("vote.2", result={"verdict": "reject"}, agent="a2")
    sim.finish("vote.3", result={"verdict": "approve"}, agent="a3")
    out = sim.rows["vote"].output
    assert (out["value"], out["agreed"], out["dissenters"]) == ("approve", 2, ["a2"])
    assert out["output"] == {"verdict": "approve"}
    assert sim.status == "SUCCEEDED"


def test_consensus_without_majority_fails() -> None:
    sim = Sim([consensus()])
    sim.start()
    for k, verdict in enumerate(["a", "b", "c"], 1):
        sim.finish(f"vote.{k}", result={"verdict": verdict}, agent=f"a{k}")
    assert sim.rows["vote"].status == "FAILED"
    assert sim.rows["vote"].error["type"] == "no_consensus"  # type: ignore[index]


def test_consensus_best_score() -> None:
    sim = Sim([consensus("best_score", "score")])
    sim.start()
    sim.finish("vote.1", result={"score": 0.4, "text": "meh"}, agent="a1")
    sim.finish("vote.2", result={"score": "high"}, agent="a2")
    sim.finish("vote.3", result={"score": 0.9, "text": "great"}, agent="a3")
    out = sim.rows["vote"].output
    assert (out["value"], out["agent_id"], out["output"]["text"]) == (0.9, "a3", "great")


def test_a_vote_from_an_agent_that_already_voted_is_asked_again_elsewhere() -> None:
    sim = Sim([consensus(n=2)])
    sim.start()
    sim.finish("vote.1", result={"verdict": "x"}, agent="a1")
    first_task = sim.rows["vote.2"].task_id
    sim.finish("vote.2", result={"verdict": "y"}, agent="a1")
    assert sim.rows["vote.2"].status == "RUNNING"
    assert sim.rows["vote.2"].task_id != first_task
    assert sim.excluded["vote.2"] == ("a1",)
    sim.finish("vote.2", result={"verdict": "x"}, agent="a2")
    assert sim.rows["vote"].output["agreed"] == 2


def test_consensus_needs_enough_agents() -> None:
    sim = Sim([consensus()])
    sim.agent_counts = {"vote": 2}
    sim.start()
    assert sim.started == []
    assert sim.status == "FAILED"
    assert sim.rows["vote"].error["type"] == "not_enough_agents"  # type: ignore[index]


def test_fallback_stands_in_for_a_failed_step() -> None:
    definition = [
        step("deploy", on_failure={"task_type": "rollback", "input": {"why": "${error.message}"}}),
        step("notify", depends_on=["deploy"], input={"result": "${outputs.deploy}"}),
    ]
    sim = Sim(definition)
    sim.start()
    sim.finish("deploy", "FAILED")
    assert sim.rows["deploy"].status == "RUNNING"
    assert sim.rows["deploy.fallback"].input == {"why": "deploy broke"}
    sim.finish("deploy.fallback", result={"rolled_back": True})
    assert sim.rows["deploy"].status == "SUCCEEDED"
    assert sim.rows["deploy"].detail["recovered"] is True
    assert sim.rows["notify"].input == {"result": {"rolled_back": True}}

    sim = Sim(definition)
    sim.start()
    sim.finish("deploy", "FAILED")
    sim.finish("deploy.fallback", "FAILED")
    assert sim.states()["deploy"] == "FAILED"
    assert sim.status == "FAILED"


def test_an_input_that_does_not_render_to_an_object_fails_the_step() -> None:
    sim = Sim([step("a", input="${input.text}")], run_input={"text": "plain"})
    sim.start()
    assert sim.states()["a"] == "FAILED"
    assert sim.status == "FAILED"
    assert "not an object" in (sim.rows["a"].error or {})["message"]


def test_stale_or_foreign_task_ends_change_nothing() -> None:
    sim = Sim([step("a")])
    sim.start()
    engine = sim._engine()
    assert not engine.task_ended(
        "a", task_id="other", status="SUCCEEDED", result={}, error=None, agent_id=None
    )
    assert not engine.task_ended(
        "nope", task_id="x", status="SUCCEEDED", result={}, error=None, agent_id=None
    )


def test_cancel_then_retry_from_the_failed_step() -> None:
    sim = Sim([step("a"), step("b", depends_on=["a"]), step("c", depends_on=["b"])])
    sim.start()
    sim.finish("a")
    sim.cancel()
    assert sim.states() == {"a": "SUCCEEDED", "b": "CANCELLED", "c": "CANCELLED"}
    assert sim.cancelled == ["b"]

    sim = Sim([step("a"), step("b", depends_on=["a"]), step("c", depends_on=["b"])])
    sim.start()
    sim.finish("a", result={"kept": 1})
    sim.finish("b", "DEAD")
    assert sim.status == "FAILED"
    assert sim.states() == {"a": "SUCCEEDED", "b": "FAILED", "c": "SKIPPED"}
    sim.started.clear()
    sim.retry()
    assert sim.started == ["b"]
    assert sim.rows["a"].output == {"kept": 1}
    sim.finish("b")
    sim.finish("c")
    assert sim.status == "SUCCEEDED"


def test_nested_groups_and_retry_inside_them() -> None:
    sim = Sim(
        [
            {
                "id": "outer",
                "strategy": "PARALLEL",
                "steps": [
                    {"id": "seq", "strategy": "SEQUENTIAL", "steps": [step("s1"), step("s2")]},
                    {
                        "id": "cond",
                        "strategy": "CONDITIONAL",
                        "branches": [
                            {
                                "name": "vote",
                                "when": "input.vote",
                                "steps": [consensus(n=2)],
                            }
                        ],
                    },
                ],
            },
            step(
                "end", depends_on=["outer"], input={"both": "${[outputs.s2, outputs.vote.value]}"}
            ),
        ],
        run_input={"vote": True},
    )
    sim.start()
    assert sorted(sim.started) == ["s1", "vote.1", "vote.2"]
    sim.finish("vote.1", result={"verdict": "ok"}, agent="a1")
    sim.finish("vote.2", result={"verdict": "ok"}, agent="a2")
    assert sim.rows["cond"].status == "SUCCEEDED"
    sim.finish("s1")
    sim.finish("s2", "FAILED")
    assert sim.status == "FAILED"
    assert sim.error is not None
    assert sim.error["step"] == "s2"
    sim.started.clear()
    sim.retry()
    assert sim.started == ["s2"]  # the vote and s1 are kept
    sim.finish("s2", result={"fixed": True})
    assert sim.rows["end"].input == {"both": [{"fixed": True}, "ok"]}
    sim.finish("end")
    assert sim.status == "SUCCEEDED"

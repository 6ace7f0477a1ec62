"""Validating definitions: every problem is reported with its JSON path."""

from __future__ import annotations

from typing import Any

import pytest

from ymera.workflows.errors import WorkflowInvalid
from ymera.workflows.plan import Plan, compile_plan
from ymera.workflows.schemas import WorkflowCreate


def plan(steps: list[dict[str, Any]], **extra: Any) -> Plan:
    return compile_plan(WorkflowCreate.model_validate({"name": "wf", "steps": steps, **extra}))


def problems(steps: list[dict[str, Any]], **extra: Any) -> list[tuple[str, str]]:
    with pytest.raises(WorkflowInvalid) as invalid:
        plan(steps, **extra)
    assert invalid.value.status_code == 422
    assert invalid.value.code == "invalid_workflow"
    found = [(p.path, p.message) for p in invalid.value.problems]
    assert invalid.value.message.startswith(found[0][0])
    return found


def step(id: str, **extra: Any) -> dict[str, Any]:
    return {"id": id, "task_type": "work", **extra}


def paths(found: list[tuple[str, str]]) -> list[str]:
    return [p for p, _ in found]


def test_a_valid_plan_lists_its_rows() -> None:
    compiled = plan(
        [
            step("a", on_failure={"task_type": "rescue"}),
            {
                "id": "vote",
                "depends_on": ["a"],
                "strategy": "CONSENSUS",
                "task": {"task_type": "judge", "input": {"code": "${outputs.a}"}},
                "agents": 3,
                "decide": {"method": "majority", "field": "verdict"},
            },
        ]
    )
    assert [(r.key, r.kind, r.parent_key) for r in compiled.rows()] == [
        ("a", "step", None),
        ("a.fallback", "fallback", "a"),
        ("vote", "group", None),
        ("vote.1", "vote", "vote"),
        ("vote.2", "vote", "vote"),
        ("vote.3", "vote", "vote"),
    ]
    assert compiled.sinks() == ["vote"]


def test_unknown_step_references() -> None:
    found = problems(
        [
            step("a", depends_on=["nope"]),
            step("b", input={"x": "${outputs.ghost.y}"}),
            {
                "id": "c",
                "strategy": "CONDITIONAL",
                "branches": [{"name": "yes", "when": "steps.phantom.status", "steps": [step("d")]}],
            },
        ]
    )
    assert found == [
        ("steps[0].depends_on[0]", "unknown step 'nope'"),
        ("steps[1].input", "unknown step 'ghost' (in outputs.ghost / steps.ghost)"),
        (
            "steps[2].branches[0].when",
            "unknown step 'phantom' (in outputs.phantom / steps.phantom)",
        ),
    ]


def test_references_must_finish_before() -> None:
    found = problems(
        [
            step("a", input={"x": "${outputs.b}"}),
            step("b"),
            {
                "id": "p",
                "strategy": "PARALLEL",
                "steps": [step("x"), step("y", input="${outputs.x}")],
            },
        ]
    )
    assert paths(found) == ["steps[0].input", "steps[2].steps[1].input"]
    assert "not certain to have finished" in found[0][1]


def test_sequences_and_dependencies_make_outputs_visible() -> None:
    plan(
        [
            step("a"),
            {
                "id": "seq",
                "depends_on": ["a"],
                "strategy": "SEQUENTIAL",
                "steps": [step("s1", input="${outputs.a}"), step("s2", input="${outputs.s1}")],
            },
            step("z", depends_on=["seq"], input={"both": "${[outputs.a, outputs.s2]}"}),
        ],
        output={"last": "${outputs.z}"},
    )


def test_cycles_are_named() -> None:
    found = problems(
        [step("a", depends_on=["c"]), step("b", depends_on=["a"]), step("c", depends_on=["b"])]
    )
    assert found == [("steps[0].depends_on[0]", "cycle: a -> c -> b -> a")]
    assert problems([step("a", depends_on=["a"])]) == [
        ("steps[0].depends_on[0]", "a step cannot depend on itself")
    ]


def test_unreachable_branches() -> None:
    found = problems(
        [
            {
                "id": "c",
                "strategy": "CONDITIONAL",
                "branches": [
                    {"name": "never", "when": "`false`", "steps": [step("n")]},
                    {"name": "fallback", "steps": [step("f")]},
                    {"name": "after", "when": "input.x", "steps": [step("g")]},
                ],
            }
        ]
    )
    assert found == [
        ("steps[0].branches[0].when", "unreachable: the condition is never true"),
        ("steps[0].branches[2]", "unreachable: branch 'fallback' before it is always taken"),
    ]


def test_bad_expressions_and_templates() -> None:
    found = problems(
        [
            step("a", input={"x": "${ a[ }"}),
            step("b", input="plain text"),
            {
                "id": "c",
                "strategy": "CONDITIONAL",
                "branches": [{"name": "x", "when": "&&", "steps": [step("d")]}],
            },
            {
                "id": "v",
                "strategy": "CONSENSUS",
                "task": {"task_type": "t"},
                "agents": 2,
                "decide": {"method": "majority", "field": "foo("},
            },
        ],
        output="${ outputs.a[ }",
    )
    assert paths(found) == [
        "steps[0].input",
        "steps[1].input",
        "steps[2].branches[0].when",
        "steps[3].decide.field",
        "output",
    ]
    assert found[0][1].startswith("bad template")
    assert found[2][1].startswith("bad expression")


def test_fields_that_do_not_belong() -> None:
    found = problems(
        [
            {"id": "a"},
            {"id": "b", "task_type": "t", "strategy": "SEQUENTIAL", "steps": [step("c")]},
            step("d", join="any"),
            {"id": "e", "strategy": "SEQUENTIAL", "steps": [step("f", depends_on=["a"])]},
            {
                "id": "g",
                "strategy": "PARALLEL",
                "steps": [step("h")],
                "join": "quorum",
                "quorum": 2,
            },
            {
                "id": "i",
                "strategy": "PIPELINE",
                "steps": [{"id": "j", "strategy": "SEQUENTIAL", "steps": [step("k")]}],
            },
            {"id": "l", "strategy": "CONSENSUS"},
            {
                "id": "m",
                "strategy": "SEQUENTIAL",
                "branches": [{"name": "q", "steps": [step("r")]}],
                "steps": [],
            },
            step("a"),
        ]
    )
    assert paths(found) == [
        "steps[0]",
        "steps[1]",
        "steps[2].join",
        "steps[3].steps[0].depends_on",
        "steps[4].quorum",
        "steps[5].steps[0]",
        "steps[6].task",
        "steps[6].agents",
        "steps[6].decide",
        "steps[7].branches",
        "steps[7].steps",
        "steps[8].id",
    ]


def test_depends_on_a_node_inside_a_group() -> None:
    found = problems(
        [
            {"id": "g", "strategy": "SEQUENTIAL", "steps": [step("inner")]},
            step("b", depends_on=["inner"]),
        ]
    )
    assert found == [
        (
            "steps[1].depends_on[0]",
            "'inner' is inside a group: depend on the top-level group instead",
        )
    ]


def test_nesting_is_capped() -> None:
    node: dict[str, Any] = step("leaf")
    for depth in range(10):
        node = {"id": f"g{depth}", "strategy": "SEQUENTIAL", "steps": [node]}
    found = problems([node])
    assert any("nest at most" in message for _, message in found)

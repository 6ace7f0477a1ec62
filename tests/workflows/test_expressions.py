"""The expression and template language: JMESPath, no eval; typed errors only."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ymera.workflows.expressions import (
    ExpressionError,
    compile_expression,
    compile_template,
    truthy,
)

CONTEXT: dict[str, Any] = {
    "input": {"repo": "ymera", "n": 3, "tags": ["a", "b"]},
    "outputs": {
        "review": {"approved": True, "comments": ["nit"], "score": 0.8},
        "tests": {"passed": False, "failures": 2},
    },
    "steps": {"tests": {"status": "SUCCEEDED"}},
    "prev": {"text": "hello"},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("input.n", 3),
        ("outputs.review.approved && outputs.tests.passed", False),
        ("outputs.review.approved || outputs.tests.passed", True),
        ("!(outputs.tests.passed)", True),
        ("outputs.tests.failures > `1`", True),
        ("outputs.review.score >= `0.9`", False),
        ("length(outputs.review.comments)", 1),
        ("contains(input.tags, 'b')", True),
        ("steps.tests.status == 'SUCCEEDED'", True),
        ("outputs.missing.field", None),
        ("prev.text", "hello"),
    ],
)
def test_expressions_evaluate(source: str, expected: Any) -> None:
    assert compile_expression(source).evaluate(CONTEXT) == expected


def test_references_are_found() -> None:
    expr = compile_expression("outputs.review.approved && steps.tests.status == 'x' || input.y")
    assert expr.refs == {"review", "tests"}
    assert compile_expression("length(outputs.review.comments[0])").refs == {"review"}


def test_constant_and_truthiness() -> None:
    assert compile_expression("`true`").constant == (True, True)
    assert compile_expression("input.x").constant == (False, None)
    assert [truthy(v) for v in (None, False, "", [], {}, 0, "x", [0], {"a": 1})] == [
        False,
        False,
        False,
        False,
        False,
        True,
        True,
        True,
        True,
    ]


@pytest.mark.parametrize(
    "source",
    [
        "",
        "  ",
        "a[",
        "outputs.",
        "&&",
        "`",
        "foo(",
        "a == `approve`",
        "(" * 100 + "a" + ")" * 100,
        "x" * 1001,
    ],
)
def test_bad_expressions_raise_the_typed_error(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


def test_evaluation_errors_are_typed() -> None:
    with pytest.raises(ExpressionError, match="length"):
        compile_expression("length(input.n)").evaluate(CONTEXT)


def test_templates() -> None:
    template = compile_template(
        {
            "whole": "${outputs.review}",
            "text": "repo ${input.repo} has ${outputs.tests.failures} failures${input.none}",
            "literal": "costs $${dollars}",
            "nested": [{"deep": "${input.tags[0]}"}, 1, None, True],
            "braces": "${ {a: input.n} }",
        }
    )
    assert template.refs == {"review", "tests"}
    assert template.render(CONTEXT) == {
        "whole": {"approved": True, "comments": ["nit"], "score": 0.8},
        "text": "repo ymera has 2 failures",
        "literal": "costs ${dollars}",
        "nested": [{"deep": "a"}, 1, None, True],
        "braces": {"a": 3},
    }


@pytest.mark.parametrize(
    "template",
    [{"x": "${"}, {"x": "${ a[ }"}, ["${}"], {"deep": "${input.x"}],
)
def test_bad_templates_raise_the_typed_error(template: Any) -> None:
    with pytest.raises(ExpressionError):
        compile_template(template)


def test_template_depth_is_capped() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = {"d": deep}
    with pytest.raises(ExpressionError, match="nested deeper"):
        compile_template(deep)


def _compile_and_run(text: str) -> None:
    try:
        expr = compile_expression(text)
    except ExpressionError:
        return
    with contextlib.suppress(ExpressionError):
        expr.evaluate(CONTEXT)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_compiles_or_raises_only_the_typed_error(text: str) -> None:
    _compile_and_run(text)


_ALPHABET = st.sampled_from(list("ab.[]{}()`'\"&|!=<>*@,:?$ 0123456789_-"))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=80))
def test_expression_like_text_compiles_or_raises_only_the_typed_error(text: str) -> None:
    _compile_and_run(text)
    with contextlib.suppress(ExpressionError):
        compile_template({"v": "x ${" + text + "} y", "w": "${" + text + "}"})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(JSON)
def test_any_json_template_renders_or_raises_only_the_typed_error(value: Any) -> None:
    with contextlib.suppress(ExpressionError):
        compile_template(value).render(CONTEXT)

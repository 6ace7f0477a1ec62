"""The safe expression and template language of workflows (docs/workflows.md).

Expressions are JMESPath (the ``jmespath`` library: a query language over JSON
with comparisons, ``&&``/``||``/``!``, filters and a fixed set of functions; it
has no way to call Python, loop, or reach anything but the data it is given).
Nothing here uses ``eval`` or ``exec``. An expression is evaluated against the
run's context::

    {"input": <the run's input>,
     "outputs": {<step id>: <output>, ...},          # steps that succeeded
     "steps": {<step id>: {"status", "output", "error", "agent_id"}, ...},
     "prev": <the previous step's output>,            # in a PIPELINE
     "error": <the failed step's error>,              # in an on_failure fallback
     "run": {"id": <run id>}}

Templates are JSON values in which a string ``"${ expr }"`` (the whole string)
is replaced by the expression's value, of any JSON type, and ``${ expr }``
inside a longer string is replaced by the value as text (a string as is, null
as nothing, anything else as compact JSON). ``$${`` writes a literal ``${``.

Every failure is an :class:`ExpressionError` (compile: a syntax error, nesting
too deep, too long; evaluation: a function given the wrong type).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

MAX_EXPRESSION_LENGTH = 1000
MAX_NESTING = 32  # brackets in an expression; levels of a template
REFERENCE_ROOTS = ("outputs", "steps")
_OPEN, _CLOSE = "([{", ")]}"


class ExpressionError(Exception):
    """An expression or template that does not compile, or fails to evaluate."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source


def _unquoted(text: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """The characters of ``text`` from ``start`` that stand outside a quoted
    string (``'...'``, ``"..."``, `` `...` ``, backslash escapes inside), with
    their index; the quotes themselves are left out."""
    quote: str | None = None
    escaped = False
    for i in range(start, len(text)):
        char = text[i]
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        else:
            yield i, char


def _check_nesting(text: str) -> None:
    """Refuse deeply nested brackets before parsing (the parser recurses)."""
    depth = 0
    for _, char in _unquoted(text):
        if char in _OPEN:
            depth += 1
            if depth > MAX_NESTING:
                raise ExpressionError(
                    f"expression nested deeper than {MAX_NESTING} brackets", source=text
                )
        elif char in _CLOSE:
            depth = max(0, depth - 1)


@dataclass(frozen=True)
class Expression:
    """A compiled expression."""

    source: str
    parsed: ParsedResult = field(repr=False, compare=False)
    # The step ids it reads through ``outputs.<id>`` or ``steps.<id>``.
    refs: frozenset[str] = frozenset()

    @property
    def constant(self) -> tuple[bool, Any]:
        """(True, value) when the expression is a literal (its value never changes)."""
        ast = self.parsed.parsed
        if ast.get("type") == "literal":
            return True, ast.get("value")
        return False, None

    def evaluate(self, context: dict[str, Any]) -> Any:
        try:
            return self.parsed.search(context)
        except JMESPathError as exc:
            raise ExpressionError(f"{self.source!r}: {exc}", source=self.source) from exc
        except RecursionError as exc:  # pragma: no cover - nesting is capped at compile
            raise ExpressionError(f"{self.source!r}: too deep", source=self.source) from exc

    def test(self, context: dict[str, Any]) -> bool:
        """The expression's value as a condition (JMESPath truthiness)."""
        return truthy(self.evaluate(context))


def truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, "", [] and {} are false; anything else
    (0 included) is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


def compile_expression(text: str) -> Expression:
    """Compile ``text``; raises :class:`ExpressionError` and nothing else."""
    if not isinstance(text, str):
        raise ExpressionError("an expression must be a string")
    if not text.strip():
        raise ExpressionError("empty expression", source=text)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression longer than {MAX_EXPRESSION_LENGTH} characters", source=text[:80]
        )
    _check_nesting(text)
    try:
        with warnings.catch_warnings():
            # `text` that is not JSON between backticks: an old, ambiguous form.
            warnings.simplefilter("error", PendingDeprecationWarning)
            parsed = jmespath.compile(text)
    except PendingDeprecationWarning as exc:
        raise ExpressionError(
            'a literal between backticks must be JSON (`"text"`, `1`, `true`); '
            "write strings as 'raw strings'",
            source=text,
        ) from exc
    except JMESPathError as exc:
        raise ExpressionError(_first_line(str(exc)), source=text) from exc
    except (RecursionError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise ExpressionError(f"cannot parse expression: {exc!r}"[:200], source=text) from exc
    return Expression(text, parsed, frozenset(_references(dict(parsed.parsed))))


def _first_line(message: str) -> str:
    return " ".join(message.split())[:300]


def _leading_fields(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The chain ``a.b.c`` of a subexpression as its nodes, left to right."""
    if node.get("type") != "subexpression":
        return [node]
    children = node.get("children") or []
    if not children:
        return []
    return _leading_fields(children[0]) + list(children[1:])


def _references(ast: dict[str, Any]) -> Iterator[str]:
    stack = [ast]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if node.get("type") == "subexpression":
            chain = _leading_fields(node)
            if (
                len(chain) >= 2
                and chain[0].get("type") == "field"
                and chain[0].get("value") in REFERENCE_ROOTS
                and chain[1].get("type") == "field"
            ):
                yield str(chain[1]["value"])
        stack.extend(c for c in node.get("children") or () if isinstance(c, dict))


# --- templates --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    text: str | None = None
    expression: Expression | None = None


def _split(text: str) -> list[_Piece]:
    """Cut a string into literal text and ``${ expr }`` pieces."""
    pieces: list[_Piece] = []
    buf: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        if text.startswith("$${", i):
            buf.append("${")
            i += 3
            continue
        if text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            if end < 0:
                raise ExpressionError("unclosed ${ in template string", source=text[:80])
            if buf:
                pieces.append(_Piece(text="".join(buf)))
                buf = []
            pieces.append(_Piece(expression=compile_expression(text[i + 2 : end].strip())))
            i = end + 1
            continue
        buf.append(text[i])
        i += 1
    if buf:
        pieces.append(_Piece(text="".join(buf)))
    return pieces


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` that closes a ``${`` whose expression starts at ``start``
    (braces and quotes inside the expression are skipped over); -1 if none."""
    depth = 0
    for i, char in _unquoted(text, start):
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return i
            depth -= 1
    return -1


@dataclass(frozen=True)
class Template:
    """A compiled template: render it against a context to get a JSON value."""

    source: Any = field(repr=False)
    _compiled: Any = field(repr=False, compare=False)
    refs: frozenset[str] = frozenset()
    expressions: tuple[Expression, ...] = ()

    def render(self, context: dict[str, Any]) -> Any:
        return _render(self._compiled, context)


def compile_template(value: Any) -> Template:
    """Compile a JSON template; raises :class:`ExpressionError` (with the JSON path
    inside the template in its message) and nothing else."""
    found: list[Expression] = []
    compiled = _compile(value, found, 0, "")
    refs: set[str] = set()
    for expression in found:
        refs |= expression.refs
    return Template(value, compiled, frozenset(refs), tuple(found))


def _compile(value: Any, found: list[Expression], depth: int, where: str) -> Any:
    if depth > MAX_NESTING:
        raise ExpressionError(f"template nested deeper than {MAX_NESTING} levels at {where or '.'}")
    if isinstance(value, str):
        if "${" not in value:
            return ("lit", value)
        try:
            pieces = _split(value)
        except ExpressionError as exc:
            raise ExpressionError(f"{where or '.'}: {exc.message}", source=exc.source) from exc
        found.extend(p.expression for p in pieces if p.expression is not None)
        if len(pieces) == 1 and pieces[0].expression is not None:
            return ("expr", pieces[0].expression)
        return ("text", tuple(pieces))
    if isinstance(value, dict):
        return (
            "dict",
            tuple(
                (str(k), _compile(v, found, depth + 1, f"{where}.{k}")) for k, v in value.items()
            ),
        )
    if isinstance(value, list):
        return (
            "list",
            tuple(_compile(v, found, depth + 1, f"{where}[{i}]") for i, v in enumerate(value)),
        )
    if value is None or isinstance(value, bool | int | float):
        return ("lit", value)
    raise ExpressionError(f"{where or '.'}: not a JSON value ({type(value).__name__})")


def _render(node: Any, context: dict[str, Any]) -> Any:
    kind, body = node
    if kind == "lit":
        return body
    if kind == "expr":
        return body.evaluate(context)
    if kind == "text":
        return "".join(
            p.text if p.text is not None else _as_text(p.expression.evaluate(context)) for p in body
        )
    if kind == "dict":
        return {k: _render(v, context) for k, v in body}
    return [_render(v, context) for v in body]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

"""Static analysis of a workspace's files: syntax, lint, complexity, maintainability.

- Syntax: Python with :func:`ast.parse`; JavaScript, TypeScript/TSX, Go, Rust and
  Java with tree-sitter (``ERROR`` and ``MISSING`` nodes); JSON, YAML and TOML with
  their parsers. The language comes from the file extension.
- Lint: ruff in a subprocess (``--isolated``, so no configuration file in the
  workspace is read; an explicit rule selection; ``--no-fix``; a timeout).
- Complexity: radon's cyclomatic complexity per function (a finding above
  :attr:`AnalysisOptions.complexity_threshold`) and maintainability index per
  file (in :attr:`AnalysisReport.metrics`).

:func:`analyze` reads files below a root, :func:`analyze_texts` analyses content
that is not on disk (the "before" of an edit), and :func:`introduced` tells the
findings an edit added, matched on the offending line's text rather than its
number, so shifted lines do not count as new problems.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import tree_sitter
import tree_sitter_go
import tree_sitter_java
import tree_sitter_javascript
import tree_sitter_rust
import tree_sitter_typescript
import yaml
from radon.complexity import cc_rank, cc_visit_ast
from radon.metrics import mi_rank, mi_visit
from radon.visitors import Function

Severity = Literal["error", "warning", "info"]

_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "python": (".py", ".pyi"),
    "javascript": (".js", ".mjs", ".cjs", ".jsx"),
    "typescript": (".ts", ".mts", ".cts"),
    "tsx": (".tsx",),
    "go": (".go",),
    "rust": (".rs",),
    "java": (".java",),
    "json": (".json",),
    "yaml": (".yaml", ".yml"),
    "toml": (".toml",),
}
LANGUAGES: dict[str, str] = {ext: lang for lang, exts in _EXTENSIONS.items() for ext in exts}
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "venv", "site-packages"})
_MAX_SYNTAX_FINDINGS = 20
_RUFF_CHUNK = 200
_RUFF_ERRORS = ("E9", "F63", "F7", "F82")
_LINE_NUMBER = re.compile(r"\bline \d+")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True)
class Finding:
    """One problem in one file. ``line`` and ``column`` are 1-based."""

    path: str
    line: int
    column: int
    severity: Severity
    code: str
    message: str
    tool: str
    # The offending line, stripped: what :func:`introduced` matches on.
    line_text: str = field(default="", compare=False)


@dataclass(frozen=True)
class FileMetrics:
    path: str
    language: str
    lines: int
    maintainability_index: float | None = None  # radon MI, 0..100, Python only
    maintainability_rank: str | None = None  # A (good) .. C
    max_complexity: int | None = None  # highest cyclomatic complexity of a function


@dataclass
class AnalysisReport:
    findings: list[Finding] = field(default_factory=list)
    metrics: dict[str, FileMetrics] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    tool_errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many findings of each severity."""
        return dict(Counter(f.severity for f in self.findings))


@dataclass(frozen=True)
class AnalysisOptions:
    max_file_bytes: int = 1024 * 1024
    max_files: int = 5_000
    complexity_threshold: int = 10  # radon rank C starts at 11
    ruff_select: tuple[str, ...] = ("E4", "E7", "E9", "F")
    ruff_timeout: float = 60.0
    run_ruff: bool = True


def analyze(
    root: Path, paths: Sequence[str] | None = None, *, options: AnalysisOptions | None = None
) -> AnalysisReport:
    """Analyse ``paths`` (relative to ``root``), or every known file when ``None``.

    Discovery skips hidden files and directories, ``node_modules`` and the like.
    Binary, oversized, unknown-language, missing and outside-the-root files land
    in :attr:`AnalysisReport.skipped` with the reason.
    """
    opts = options or AnalysisOptions()
    root = Path(root).resolve()
    report = AnalysisReport()
    if paths is None:
        candidates = list(_discover(root))
    else:
        unique: dict[str, None] = {}
        for raw in paths:
            rel = _normalize(raw)
            if rel is None:
                report.skipped[raw] = "outside"
            else:
                unique[rel] = None
        candidates = list(unique)
    for rel in candidates[opts.max_files :]:
        report.skipped[rel] = "file_limit"
    python_lines: dict[str, list[str]] = {}
    for rel in candidates[: opts.max_files]:
        language = LANGUAGES.get(PurePosixPath(rel).suffix.lower())
        try:
            if language is None:
                raise _Skipped("unknown_language")
            text = _load(root, rel, opts)
        except _Skipped as skip:
            report.skipped[rel] = skip.reason
            continue
        lines = _split_lines(text)
        findings, metrics = _analyze_file(rel, language, text, opts)
        report.findings.extend(_with_line_text(findings, lines))
        report.metrics[rel] = replace(metrics, lines=len(lines) - (lines[-1] == ""))
        if language == "python":
            python_lines[rel] = lines
    if opts.run_ruff and python_lines:
        lint: dict[str, list[Finding]] = {}
        for finding in _ruff(root, sorted(python_lines), opts, report.tool_errors):
            lint.setdefault(finding.path, []).append(finding)
        for rel, findings in lint.items():
            report.findings.extend(_with_line_text(findings, python_lines[rel]))
    report.findings.sort(key=lambda f: (f.path, f.line, f.column, f.code))
    return report


def analyze_texts(
    files: Mapping[str, str], *, options: AnalysisOptions | None = None
) -> AnalysisReport:
    """Analyse in-memory files (path -> text) with the same pipeline as :func:`analyze`."""
    with tempfile.TemporaryDirectory(prefix="ymera-analysis-") as tmp:
        root = Path(tmp)
        paths: list[str] = []
        unsafe: dict[str, str] = {}
        for raw, text in files.items():
            rel = _normalize(raw)
            if rel is None:
                unsafe[raw] = "outside"
                continue
            target = root / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8", newline="")
            except (OSError, UnicodeError):  # "a.py" and "a.py/b.py"; lone surrogates
                unsafe[raw] = "unwritable"
                continue
            paths.append(rel)
        report = analyze(root, paths, options=options)
    report.skipped.update(unsafe)
    return report


def introduced(before: AnalysisReport, after: AnalysisReport) -> list[Finding]:
    """The findings of ``after`` that ``before`` did not have.

    Findings match on (path, code, message, text of the offending line), not on
    line numbers, and with multiplicity: a second copy of an existing problem is
    new. ``introduced(after, before)`` gives the problems an edit fixed.
    """
    remaining = Counter(_match_key(f) for f in before.findings)
    new: list[Finding] = []
    for finding in after.findings:
        key = _match_key(finding)
        if remaining[key] > 0:
            remaining[key] -= 1
        else:
            new.append(finding)
    return new


def _match_key(finding: Finding) -> tuple[str, str, str, str]:
    message = _LINE_NUMBER.sub("line N", finding.message)
    return (finding.path, finding.code, message, " ".join(finding.line_text.split()))


# --- files -------------------------------------------------------------------------


class _Skipped(Exception):
    """A file is not analysed, for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _normalize(raw: str) -> str | None:
    """A clean relative POSIX path, or None when it is absolute or climbs out."""
    if not raw or "\x00" in raw or "\\" in raw:
        return None
    path = PurePosixPath(raw)
    parts = [p for p in path.parts if p != "."]
    if path.is_absolute() or ".." in parts or not parts:
        return None
    return "/".join(parts)


def _discover(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        base = Path(dirpath).relative_to(root)
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in LANGUAGES:
                yield (base / name).as_posix()


def _load(root: Path, rel: str, opts: AnalysisOptions) -> str:
    """The file's text; raises :class:`_Skipped` with the reason it is not read."""
    real = os.path.realpath(root / rel)
    if os.path.commonpath([str(root), real]) != str(root):
        raise _Skipped("outside")
    try:
        if not os.path.isfile(real):
            raise _Skipped("not_a_file" if os.path.exists(real) else "missing")
        if os.path.getsize(real) > opts.max_file_bytes:
            raise _Skipped("too_large")
        with open(real, "rb") as fh:
            data = fh.read(opts.max_file_bytes + 1)
    except OSError as exc:
        raise _Skipped("unreadable") from exc
    if len(data) > opts.max_file_bytes:
        raise _Skipped("too_large")
    if b"\x00" in data[:8192]:
        raise _Skipped("binary")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Skipped("binary") from exc


def _split_lines(text: str) -> list[str]:
    # The way Python, ruff and tree-sitter count lines (not str.splitlines, which
    # also breaks at form feeds and other separators).
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _with_line_text(findings: list[Finding], lines: list[str]) -> list[Finding]:
    return [
        replace(f, line_text=lines[f.line - 1].strip()) if 0 < f.line <= len(lines) else f
        for f in findings
    ]


# --- per-file analysis -------------------------------------------------------------


def _analyze_file(
    rel: str, language: str, text: str, opts: AnalysisOptions
) -> tuple[list[Finding], FileMetrics]:
    metrics = FileMetrics(path=rel, language=language, lines=0)
    if language == "python":
        return _python(rel, text, opts, metrics)
    if language == "json":
        return _json_syntax(rel, text), metrics
    if language == "yaml":
        return _yaml_syntax(rel, text), metrics
    if language == "toml":
        return _toml_syntax(rel, text), metrics
    return _tree_sitter_syntax(rel, language, text), metrics


def _syntax(rel: str, line: int, column: int, message: str, tool: str) -> Finding:
    return Finding(rel, max(line, 1), max(column, 1), "error", "syntax", message, tool)


def _python(
    rel: str, text: str, opts: AnalysisOptions, metrics: FileMetrics
) -> tuple[list[Finding], FileMetrics]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes etc.
            tree = ast.parse(text, filename=rel)
    except SyntaxError as exc:
        finding = _syntax(rel, exc.lineno or 1, exc.offset or 1, exc.msg, "python")
        return [finding], metrics
    except (ValueError, RecursionError, MemoryError) as exc:
        return [_syntax(rel, 1, 1, f"Cannot parse: {exc}", "python")], metrics
    findings: list[Finding] = []
    worst = 0
    try:
        functions = list(_functions(cc_visit_ast(tree)))
        mi = float(mi_visit(text, multi=True))
    except (SyntaxError, ValueError, RecursionError):  # radon chokes on rare inputs
        return [], metrics
    for fn in functions:
        worst = max(worst, fn.complexity)
        if fn.complexity > opts.complexity_threshold:
            kind = "Method" if fn.is_method else "Function"
            name = f"{fn.classname}.{fn.name}" if fn.classname else fn.name
            message = (
                f"{kind} `{name}` is too complex "
                f"(cyclomatic complexity {fn.complexity}, rank {cc_rank(fn.complexity)})"
            )
            findings.append(
                Finding(
                    rel, fn.lineno, fn.col_offset + 1, "warning", "complexity", message, "radon"
                )
            )
    metrics = replace(
        metrics,
        maintainability_index=round(mi, 2),
        maintainability_rank=str(mi_rank(mi)),
        max_complexity=worst if functions else None,
    )
    return findings, metrics


def _functions(blocks: Sequence[Any]) -> Iterator[Any]:
    """Every function and method radon saw, closures included."""
    for block in blocks:
        if isinstance(block, Function):
            yield block
            yield from _functions(block.closures)


def _json_syntax(rel: str, text: str) -> list[Finding]:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return [_syntax(rel, exc.lineno, exc.colno, exc.msg, "json")]
    except RecursionError:
        return [_syntax(rel, 1, 1, "Nested too deeply", "json")]
    return []


def _yaml_syntax(rel: str, text: str) -> list[Finding]:
    try:
        # Events only: nothing is constructed, so no alias expansion, no tags.
        for _ in yaml.parse(text, Loader=yaml.SafeLoader):
            pass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return [_syntax(rel, line, column, str(exc.problem or exc.context), "yaml")]
    except yaml.YAMLError as exc:
        return [_syntax(rel, 1, 1, str(exc), "yaml")]
    return []


def _toml_syntax(rel: str, text: str) -> list[Finding]:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_POSITION.search(message)
        line, column = (int(where[1]), int(where[2])) if where else (1, 1)
        return [_syntax(rel, line, column, _TOML_POSITION.sub("", message).strip(), "toml")]
    return []


@functools.cache
def _ts_language(language: str) -> tree_sitter.Language:
    grammars = {
        "javascript": tree_sitter_javascript.language,
        "typescript": tree_sitter_typescript.language_typescript,
        "tsx": tree_sitter_typescript.language_tsx,
        "go": tree_sitter_go.language,
        "rust": tree_sitter_rust.language,
        "java": tree_sitter_java.language,
    }
    return tree_sitter.Language(grammars[language]())


def _tree_sitter_syntax(rel: str, language: str, text: str) -> list[Finding]:
    data = text.encode("utf-8")
    tree = tree_sitter.Parser(_ts_language(language)).parse(data)
    if not tree.root_node.has_error:
        return []
    rows = data.split(b"\n")
    findings: list[Finding] = []
    stack = [tree.root_node]
    while stack and len(findings) < _MAX_SYNTAX_FINDINGS:
        node = stack.pop()
        row, byte_col = node.start_point
        column = len(rows[row][:byte_col].decode("utf-8", "replace")) + 1 if row < len(rows) else 1
        if node.is_missing:
            findings.append(_syntax(rel, row + 1, column, f"Missing `{node.type}`", "tree-sitter"))
        elif node.is_error:
            snippet = (node.text or b"").decode("utf-8", "replace").strip().split("\n")[0][:40]
            message = f"Syntax error near `{snippet}`" if snippet else "Syntax error"
            findings.append(_syntax(rel, row + 1, column, message, "tree-sitter"))
        elif node.has_error:
            stack.extend(reversed(node.children))
    return findings


# --- ruff --------------------------------------------------------------------------


def _ruff(root: Path, rels: list[str], opts: AnalysisOptions, errors: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    for start in range(0, len(rels), _RUFF_CHUNK):
        chunk = rels[start : start + _RUFF_CHUNK]
        output = _run_ruff(root, chunk, opts, errors)
        if output is not None:
            findings.extend(_parse_ruff(root, chunk, output, errors))
    return findings


def _run_ruff(root: Path, rels: list[str], opts: AnalysisOptions, errors: list[str]) -> str | None:
    # --isolated: read no pyproject.toml / ruff.toml, the workspace is untrusted.
    flags = ["--isolated", "--no-cache", "--no-fix", "--exit-zero", "--output-format", "json"]
    select = ["--select", ",".join(opts.ruff_select)]
    command = [sys.executable, "-m", "ruff", "check", *flags, *select, "--", *rels]
    try:
        done = subprocess.run(  # noqa: S603 - fixed program, file names after "--"
            command,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=opts.ruff_timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        errors.append(f"ruff timed out after {opts.ruff_timeout:g} s")
        return None
    except OSError as exc:
        errors.append(f"ruff could not start: {exc}")
        return None
    if done.returncode != 0:
        errors.append(f"ruff failed ({done.returncode}): {done.stderr.strip()[:500]}")
        return None
    return done.stdout


def _parse_ruff(root: Path, rels: list[str], output: str, errors: list[str]) -> list[Finding]:
    try:
        items = json.loads(output or "[]")
    except json.JSONDecodeError:
        errors.append("ruff printed output that is not JSON")
        return []
    by_name: dict[str, str] = {}
    for rel in rels:
        by_name[os.path.normpath(root / rel)] = rel
        by_name[os.path.realpath(root / rel)] = rel
    findings: list[Finding] = []
    for item in items:
        code = item.get("code")
        path = by_name.get(os.path.normpath(str(item.get("filename", ""))))
        if not code or code == "invalid-syntax" or path is None:
            continue  # syntax errors come from our own parse, once
        location = item.get("location") or {}
        severity: Severity = "error" if str(code).startswith(_RUFF_ERRORS) else "warning"
        findings.append(
            Finding(
                path,
                int(location.get("row") or 1),
                int(location.get("column") or 1),
                severity,
                str(code),
                str(item.get("message", "")),
                "ruff",
            )
        )
    return findings

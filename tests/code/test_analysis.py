from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ymera.code.analysis import (
    AnalysisOptions,
    AnalysisReport,
    Finding,
    analyze,
    analyze_texts,
    introduced,
)

COMPLEX = (
    "def route(x):\n"
    + "".join(f"    if x == {i}:\n        return {i}\n" for i in range(12))
    + "    return -1\n"
)


def by_code(report: AnalysisReport, code: str) -> list[Finding]:
    return [f for f in report.findings if f.code == code]


def test_python_syntax_error_has_line_and_column() -> None:
    report = analyze_texts({"pkg/bad.py": "x = 1\n\ndef f(:\n    pass\n"})
    [finding] = report.findings
    assert (finding.path, finding.line, finding.column) == ("pkg/bad.py", 3, 7)
    assert (finding.severity, finding.code, finding.tool) == ("error", "syntax", "python")
    assert finding.line_text == "def f(:"
    assert report.metrics["pkg/bad.py"].maintainability_index is None


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("app.js", "let a = 1;\n\nfunction f( {\n  return 1;\n}\n", 3),
        ("app.jsx", "const a = <div>{x</div>;\n", 1),
        ("app.ts", "const ok: number = 1;\nconst x: number = ;\n", 2),
        ("view.tsx", "const a = 1;\nconst v = <div>{</div>;\n", 2),
        ("main.go", "package main\n\nfunc main() {\n\tx := \n}\n", 4),
        ("lib.rs", "fn main() {\n    let x = ;\n}\n", 2),
        ("A.java", "class A {\n  void f() { int x = }\n}\n", 2),
        ("data.json", '{\n  "a": 1,\n}\n', 3),
        ("conf.yaml", "a: 1\n b: [\n", 2),
        ("conf.toml", "a = 1\nb = [\nc =", 3),
    ],
)
def test_syntax_errors_in_other_languages(name: str, text: str, line: int) -> None:
    report = analyze_texts({name: text})
    syntax = by_code(report, "syntax")
    assert syntax, report
    assert syntax[0].line == line
    assert syntax[0].severity == "error"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("ok.js", "export function f(a) { return a?.b ?? 1; }\n"),
        ("ok.ts", "export const f = <T,>(a: T): T => a;\n"),
        ("ok.tsx", "export const V = () => <div className='x'>{1}</div>;\n"),
        ("ok.go", "package main\n\nfunc main() {}\n"),
        ("ok.rs", "fn main() { let _x: Vec<u8> = vec![]; }\n"),
        ("Ok.java", "class Ok { int f() { return 1; } }\n"),
        ("ok.json", '{"a": [1, 2]}'),
        ("ok.yml", "a: [1, 2]\n---\nb: c\n"),
        ("ok.toml", "[tool]\nx = 1\n"),
    ],
)
def test_valid_files_have_no_findings(name: str, text: str) -> None:
    report = analyze_texts({name: text})
    assert report.findings == []
    assert report.metrics[name].lines == text.count("\n") + (not text.endswith("\n"))


def test_ruff_reports_unused_import() -> None:
    report = analyze_texts({"m.py": "import os\nimport sys\n\nprint(sys.argv)\n"})
    [finding] = report.findings
    assert (finding.code, finding.tool, finding.line, finding.column) == ("F401", "ruff", 1, 8)
    assert "os" in finding.message
    assert finding.line_text == "import os"
    assert report.tool_errors == []


def test_ruff_ignores_the_workspace_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.ruff.lint]\nignore = ["F401"]\n')
    (tmp_path / "m.py").write_text("import os\n")
    report = analyze(tmp_path)
    assert [f.code for f in report.findings] == ["F401"]
    assert not (tmp_path / ".ruff_cache").exists()


def test_ruff_failure_is_a_tool_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", sys.executable + "-missing")
    report = analyze_texts({"m.py": "import os\n"})
    assert report.findings == []
    [error] = report.tool_errors
    assert "ruff" in error


def test_complex_function_is_reported_with_maintainability() -> None:
    report = analyze_texts({"svc.py": COMPLEX + "\n\ndef simple():\n    return 1\n"})
    [finding] = report.findings
    assert (finding.code, finding.tool, finding.line) == ("complexity", "radon", 1)
    assert "`route`" in finding.message
    assert "complexity 13" in finding.message
    metrics = report.metrics["svc.py"]
    assert metrics.max_complexity == 13
    assert metrics.maintainability_index is not None
    assert 0 < metrics.maintainability_index <= 100
    assert metrics.maintainability_rank in {"A", "B", "C"}


def test_complex_method_and_closure_are_reported() -> None:
    method = "class C:\n" + "\n".join("    " + line for line in COMPLEX.splitlines()) + "\n"
    closure = "def outer():\n" + "\n".join("    " + line for line in COMPLEX.splitlines())
    report = analyze_texts({"c.py": method, "d.py": closure + "\n    return route\n"})
    messages = [f.message for f in by_code(report, "complexity")]
    assert any("Method `C.route`" in m for m in messages)
    assert any("Function `route`" in m for m in messages)


def test_threshold_is_an_option() -> None:
    report = analyze_texts({"s.py": COMPLEX}, options=AnalysisOptions(complexity_threshold=20))
    assert report.findings == []


def test_introduced_reports_only_the_new_problem_despite_shifted_lines() -> None:
    before_text = "import json\n\n\ndef f(x):\n    return x\n"
    after_text = "import os\nimport json\n\n\ndef f(x):\n    return x\n"
    before = analyze_texts({"m.py": before_text})
    after = analyze_texts({"m.py": after_text})
    assert [(f.code, f.line) for f in before.findings] == [("F401", 1)]
    assert [(f.code, f.line) for f in after.findings] == [("F401", 1), ("F401", 2)]
    [new] = introduced(before, after)
    assert (new.code, new.line, new.line_text) == ("F401", 1, "import os")
    assert [f.line_text for f in introduced(after, before)] == []


def test_introduced_counts_multiplicity_and_ignores_reindentation() -> None:
    def finding(line: int, text: str) -> Finding:
        return Finding("a.py", line, 1, "warning", "F401", "`os` imported but unused", "ruff", text)

    before = AnalysisReport(findings=[finding(3, "import os")])
    after = AnalysisReport(findings=[finding(9, "  import   os"), finding(10, "import os")])
    assert introduced(before, after) == [after.findings[1]]


def test_introduced_ignores_line_numbers_inside_messages() -> None:
    def finding(message: str) -> Finding:
        return Finding("a.py", 5, 1, "error", "syntax", message, "python", "x = (]")

    before = AnalysisReport(findings=[finding("does not match '(' on line 4")])
    after = AnalysisReport(findings=[finding("does not match '(' on line 7")])
    assert introduced(before, after) == []


def test_analyze_discovers_known_files_and_skips_the_rest(tmp_path: Path) -> None:
    files = {
        "src/app.py": "import os\n",
        "src/web/app.ts": "const x: number = ;\n",
        ".git/hooks/x.py": "import os\n",
        ".hidden.py": "import os\n",
        "node_modules/lib/index.js": "function (",
        "notes.txt": "hello",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "blob.py").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "big.json").write_text("[" + "1," * 600 + "1]")
    (tmp_path / "latin.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    report = analyze(tmp_path, options=AnalysisOptions(max_file_bytes=1000))
    assert sorted(report.metrics) == ["src/app.py", "src/web/app.ts"]
    assert {f.path for f in report.findings} == {"src/app.py", "src/web/app.ts"}
    assert report.skipped == {"big.json": "too_large", "blob.py": "binary", "latin.py": "binary"}
    assert report.counts() == {"warning": 1, "error": 1}


def test_explicit_paths_are_confined_to_the_root(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (tmp_path / "secret.py").write_text("import os\n")
    (root / "escape.py").symlink_to(tmp_path / "secret.py")
    (root / "ok.py").write_text("x = 1\n")
    paths = ["../secret.py", "/etc/passwd", "escape.py", "missing.py", "ok.py", "./ok.py", "r.md"]
    report = analyze(root, paths)
    assert list(report.metrics) == ["ok.py"]
    assert report.skipped == {
        "../secret.py": "outside",
        "/etc/passwd": "outside",
        "escape.py": "outside",
        "missing.py": "missing",
        "r.md": "unknown_language",
    }


def test_analyze_texts_refuses_unsafe_names() -> None:
    files = {"../x.py": "import os\n", "ok.py": "x = 1\n", "ok.py/y.py": "y = 2\n"}
    report = analyze_texts(files)
    assert report.skipped == {"../x.py": "outside", "ok.py/y.py": "unwritable"}
    assert list(report.metrics) == ["ok.py"]


def test_file_limit() -> None:
    files = {f"m{i}.py": "x = 1\n" for i in range(3)}
    report = analyze_texts(files, options=AnalysisOptions(max_files=2, run_ruff=False))
    assert sorted(report.metrics) == ["m0.py", "m1.py"]
    assert report.skipped == {"m2.py": "file_limit"}

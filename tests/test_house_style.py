"""The house style's measurable rules: functions do one thing (no function
radon rates D or worse: cyclomatic complexity above 20), and modules are split
past ~500 lines (none left past 800)."""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_rank, cc_visit
from radon.visitors import Class

SRC = Path(__file__).resolve().parents[1] / "src" / "ymera"
MAX_LINES = 800


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def test_no_function_is_rated_d_or_worse() -> None:
    worse: list[str] = []
    for path in _modules():
        # (radon lists a class's methods among the functions, and the class apart)
        for fn in cc_visit(path.read_text(encoding="utf-8")):
            if not isinstance(fn, Class) and cc_rank(fn.complexity) not in ("A", "B", "C"):
                where = path.relative_to(SRC.parent)
                worse.append(f"{where}:{fn.lineno} {fn.fullname} ({fn.complexity})")
    assert not worse, "split these functions (complexity above 20):\n" + "\n".join(worse)


def test_no_module_is_far_past_the_split_size() -> None:
    long = [
        f"{p.relative_to(SRC.parent)} ({n} lines)"
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert not long, f"split these modules (past {MAX_LINES} lines):\n" + "\n".join(long)

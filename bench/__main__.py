"""`make bench`: run every benchmark in this folder and print its comparison.

Each benchmark module exposes ``main(argv) -> int``. Run one with its options:
``python -m bench dispatch --tasks 500``.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

# This checkout's source first: run from a second worktree (a baseline, a
# branch), a benchmark measures that worktree's code, not the installed one's.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

BENCHMARKS = ("events", "dispatch", "editor", "chat", "upload", "routing_sim")
# The probe loop's time on a quiet machine of the kind the numbers in
# docs/benchmarks.md come from (2 cores); the same code measures 2-3x slower
# on a machine whose probe runs 2-3x slower.
QUIET_PROBE = "0.13-0.15 s"


def probe_seconds(n: int = 2_000_000) -> float:
    """Seconds a pure-Python loop of ``n`` additions takes (the best of three):
    printed before each benchmark, so that a slow machine is told apart from a
    slower change."""
    # Run as module-level code (names in a dict, as in a script): the loop the
    # sessions' numbers were quoted against, not a function's faster locals.
    code = compile("x = 0\nfor i in range(n):\n    x += i\n", "<probe>", "exec")
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        exec(code, {"n": n})
        best = min(best, time.perf_counter() - began)
    return best


def main(argv: list[str]) -> int:
    """``python -m bench`` runs all; ``python -m bench NAME [options]`` runs one."""
    if argv and argv[0] in BENCHMARKS:
        runs = [(argv[0], argv[1:])]
    else:
        runs = [(name, []) for name in BENCHMARKS]
    status = 0
    for name, args in runs:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n=== bench.{name} ===", flush=True)
        print(
            f"machine: a Python loop of 2,000,000 additions takes {probe_seconds():.3f} s"
            f" ({QUIET_PROBE} on a quiet machine of the kind docs/benchmarks.md was measured on)",
            flush=True,
        )
        status |= int(module.main(args))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

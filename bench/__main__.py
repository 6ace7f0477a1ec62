"""`make bench`: run every benchmark in this folder and print its comparison.

Each benchmark module exposes ``main(argv) -> int``. Run one with its options:
``python -m bench dispatch --tasks 500``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

# This checkout's source first: run from a second worktree (a baseline, a
# branch), a benchmark measures that worktree's code, not the installed one's.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

BENCHMARKS = ("events", "dispatch", "editor", "chat", "upload", "routing_sim")


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
        status |= int(module.main(args))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

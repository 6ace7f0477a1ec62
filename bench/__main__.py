"""`make bench`: run every benchmark in this folder and print its comparison.

Each benchmark module exposes ``main(argv) -> int``. Pass names to run a subset:
``python -m bench events``.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("events",)


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    status = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n=== bench.{name} ===", flush=True)
        status |= int(module.main([]))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

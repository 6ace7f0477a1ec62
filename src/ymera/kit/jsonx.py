"""JSON on the hot paths (orjson): frames to and from workers, event payloads,
JSON columns, SSE. About five times cheaper than the standard library's json
per call, and it never writes ``NaN`` (invalid JSON, which PostgreSQL refuses):
non-finite floats become ``null``.
"""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """Compact JSON text; values JSON has no type for are written with ``str``."""
    return orjson.dumps(value, default=str, option=_OPTIONS).decode()


def dumpb(value: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes (no decode when bytes are what is wanted)."""
    return orjson.dumps(value, default=str, option=_OPTIONS)


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Parse JSON text; raises ``ValueError`` (``orjson.JSONDecodeError``) on bad input."""
    return orjson.loads(data)

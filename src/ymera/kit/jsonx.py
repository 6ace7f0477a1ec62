"""JSON on the hot paths (orjson): frames to and from workers, event payloads,
JSON columns, SSE. About five times cheaper than the standard library's json
per call, and it never writes ``NaN`` (invalid JSON, which PostgreSQL refuses):
non-finite floats become ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """Compact JSON text; values JSON has no type for are written with ``str``."""
    return dumpb(value).decode()


def dumpb(value: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes (no decode when bytes are what is wanted)."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except orjson.JSONEncodeError:
        # What orjson refuses and JSON allows (integers beyond 64 bits): the
        # standard library, same compact form.
        text = json.dumps(_finite(value), default=str, separators=(",", ":"), ensure_ascii=False)
        return text.encode()


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as None (as orjson writes them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Parse JSON text; raises ``ValueError`` (``orjson.JSONDecodeError``) on bad input."""
    return orjson.loads(data)

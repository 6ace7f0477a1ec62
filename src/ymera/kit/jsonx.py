"""JSON on the hot paths (orjson): frames to and from workers, event payloads,
JSON columns, SSE. About five times cheaper than the standard library's json
per call, and it never writes ``NaN`` (invalid JSON, which PostgreSQL refuses):
non-finite floats become ``null``.
"""

from __future__ import annotations

import json
import math
import re
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


# orjson reads an integer beyond 64 bits as a float (silently losing digits):
# text with a run of 19 or more digits, which every such integer has, is read
# by the standard library instead (a scan in C: about a microsecond per kB).
_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_B = re.compile(rb"\d{19}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Parse JSON text; raises ``ValueError`` (``orjson.JSONDecodeError`` or
    ``json.JSONDecodeError``) on bad input. Integers of any size come back
    exactly."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    long = _LONG_DIGITS.search(data) if isinstance(data, str) else _LONG_DIGITS_B.search(data)
    if long is None:
        return orjson.loads(data)
    return json.loads(data, parse_constant=_refuse_constant)

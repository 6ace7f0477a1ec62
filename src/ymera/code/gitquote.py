"""Git's C-style quoting of path names in diff headers (``"a/t\\tb.txt"``).

Git quotes a name that holds ``"``, ``\\``, a control character or a non-ASCII
byte, escaping it as C does (``\\t``, ``\\"``, octal ``\\303\\251`` for UTF-8
bytes). Spaces are not quoted.
"""

from __future__ import annotations

_ESCAPES = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r", 34: '"', 92: "\\"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}


def _needs_quoting(byte: int) -> bool:
    return byte < 0x20 or byte >= 0x7F or byte in (34, 92)


def quote_path(name: str) -> str:
    """``name`` as git writes it in a header: unchanged, or quoted and escaped."""
    raw = name.encode("utf-8", "surrogateescape")
    if not any(_needs_quoting(byte) for byte in raw):
        return name
    out = []
    for byte in raw:
        if byte in _ESCAPES:
            out.append("\\" + _ESCAPES[byte])
        elif _needs_quoting(byte):
            out.append(f"\\{byte:03o}")
        else:
            out.append(chr(byte))
    return '"' + "".join(out) + '"'


def unquote_token(text: str) -> tuple[str, str]:
    """Read one quoted name at the start of ``text``: (the name, the rest after it)."""
    assert text.startswith('"')
    raw = bytearray()
    i = 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return raw.decode("utf-8", "surrogateescape"), text[i + 1 :]
        if char != "\\":
            raw.extend(char.encode("utf-8", "surrogateescape"))
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt in _UNESCAPES:
            raw.append(_UNESCAPES[nxt])
            i += 2
        elif len(text) >= i + 4 and all(c in "01234567" for c in text[i + 1 : i + 4]):
            raw.append(int(text[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            raise ValueError(f"bad escape in quoted name {text!r}")
    raise ValueError(f"unterminated quoted name {text!r}")


def unquote_path(text: str) -> str:
    """A header name, quoted or not (a bare name is returned as it is)."""
    if text.startswith('"'):
        return unquote_token(text)[0]
    return text


def git_names(rest: str) -> tuple[str | None, str | None]:
    """The two names of a ``diff --git a/x b/y`` line (after ``diff --git ``), without
    their ``a/`` and ``b/`` prefixes; None when they cannot be told apart (unquoted
    names with spaces that differ: then the rename or ---/+++ lines name them)."""
    a: str | None = None
    b: str | None = None
    try:
        if rest.startswith('"'):
            a, tail = unquote_token(rest)
            tail = tail.removeprefix(" ")
            b = unquote_token(tail)[0] if tail.startswith('"') else tail
        elif ' "' in rest:
            a, tail = rest.split(' "', 1)
            b = unquote_token('"' + tail)[0]
        else:
            for i, char in enumerate(rest):
                if char != " ":
                    continue
                left, right = rest[:i], rest[i + 1 :]
                if left.startswith("a/") and right.startswith("b/") and left[2:] == right[2:]:
                    a, b = left, right
                    break
            if a is None and rest.count(" ") == 1:
                a, b = rest.split(" ")
    except ValueError:
        return None, None
    return (
        a.removeprefix("a/") if a is not None else None,
        b.removeprefix("b/") if b is not None else None,
    )

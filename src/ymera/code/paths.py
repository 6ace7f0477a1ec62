"""Confine every editor path to its workspace root, symlinks included.

A path is accepted only when it is relative, holds no NUL byte, and its real path
(every symlink resolved, intermediate directories included) lies inside the real
path of the root. Paths that do not exist yet (a file about to be created) are
checked the same way: the deepest existing ancestor is resolved and the missing
tail appended, so a symlinked directory pointing outside is caught before anything
is created below it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ymera.code.errors import OutsideWorkspace


def resolve_inside(root: Path, rel: str) -> Path:
    """The real path of ``rel`` under ``root``; :class:`OutsideWorkspace` if it escapes.

    ``""`` and ``"."`` name the root itself. A symlink inside the workspace that
    points to another place inside the workspace is followed (the real path is
    returned, so writes land on the link's target).
    """
    if "\x00" in rel:
        raise OutsideWorkspace("Path contains a NUL byte", details={"path": rel})
    if rel.startswith(("/", "\\")) or PurePosixPath(rel).is_absolute() or os.path.isabs(rel):
        raise OutsideWorkspace(
            f"Absolute paths are refused; give a path relative to the workspace: {rel!r}",
            details={"path": rel},
        )
    try:
        real_root = root.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise OutsideWorkspace(f"Workspace root is not usable: {exc}") from exc
    try:
        # Non-strict resolve follows every existing symlink (dangling ones too) and
        # appends the missing tail, i.e. it resolves the deepest existing ancestor.
        resolved = (real_root / rel).resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # symlink loop, permission denied
        raise OutsideWorkspace(f"Cannot resolve {rel!r}: {exc}", details={"path": rel}) from exc
    if not resolved.is_relative_to(real_root):
        raise OutsideWorkspace(
            f"Path {rel!r} resolves outside the workspace", details={"path": rel}
        )
    return resolved


def relative_key(root: Path, path: Path) -> str:
    """``path`` (a real path inside ``root``) as a POSIX path relative to the real root."""
    rel = path.relative_to(root.resolve()).as_posix()
    return "" if rel == "." else rel

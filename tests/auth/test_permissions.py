"""The permission matrix: each role's permissions, stated here independently of
the code, and the table in docs/security.md generated from the code.

Print the table for the doc with ``python -m tests.auth.test_permissions``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ymera.auth.permissions import (
    AGENT_KEY_PERMISSIONS,
    ROLE_PERMISSIONS,
    Permission,
    Role,
    role_permissions,
)
from ymera.auth.principal import Principal

A, OP, D, V = Role.ADMIN, Role.OPERATOR, Role.DEVELOPER, Role.VIEWER
ALL = {A, OP, D, V}
DEV_UP = {A, OP, D}
OPS_UP = {A, OP}

# Which roles hold each permission: the specification the code must match.
EXPECTED: dict[str, set[Role]] = {
    "users:read": OPS_UP,
    "users:write": {A},
    "api_keys:read": ALL,
    "api_keys:write": ALL,
    "api_keys:admin": {A},
    "events:read": ALL,
    "agents:read": ALL,
    "agents:write": DEV_UP,
    "agents:operate": OPS_UP,
    "agents:connect": {A},
    "tasks:read": ALL,
    "tasks:write": DEV_UP,
    "tasks:operate": OPS_UP,
    "tasks:report": {A},
    "workflows:read": ALL,
    "workflows:write": DEV_UP,
    "routing:read": ALL,
    "routing:write": OPS_UP,
    "learning:read": ALL,
    "learning:write": OPS_UP,
    "knowledge:read": ALL,
    "knowledge:write": DEV_UP,
    "chat:read": ALL,
    "chat:write": DEV_UP,
    "files:read": ALL,
    "files:write": DEV_UP,
    "workspaces:read": ALL,
    "workspaces:write": DEV_UP,
    "edits:review": DEV_UP,
    "webhooks:read": ALL,
    "webhooks:write": OPS_UP,
    "monitoring:read": ALL,
    "system:admin": {A},
}

EXPECTED_AGENT_KEY = {
    "agents:connect",
    "tasks:read",
    "tasks:report",
    "files:read",
    "files:write",
    "chat:read",
    "chat:write",
    "knowledge:read",
    "knowledge:write",
    "workspaces:read",
    "workspaces:write",
}

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
START, END = "<!-- permission-matrix:start -->", "<!-- permission-matrix:end -->"


def test_every_permission_is_placed_in_the_matrix() -> None:
    assert set(EXPECTED) == {p.value for p in Permission}


@pytest.mark.parametrize("permission", list(Permission), ids=str)
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_role_holds_exactly_its_permissions(role: Role, permission: Permission) -> None:
    expected = role in EXPECTED[permission.value]
    assert (permission in ROLE_PERMISSIONS[role]) is expected
    assert (
        Principal(
            kind="user", user_id="u", role=role.value, permissions=role_permissions(role)
        ).can(permission)
        is expected
    )


def test_roles_are_nested() -> None:
    assert ROLE_PERMISSIONS[V] < ROLE_PERMISSIONS[D] < ROLE_PERMISSIONS[OP] < ROLE_PERMISSIONS[A]
    assert ROLE_PERMISSIONS[A] == frozenset(Permission)


def test_agent_key_scope() -> None:
    assert {p.value for p in AGENT_KEY_PERMISSIONS} == EXPECTED_AGENT_KEY


def test_unknown_role_has_no_permission() -> None:
    assert role_permissions("root") == frozenset()
    assert role_permissions("agent") == frozenset()


def test_permission_names_are_domain_action() -> None:
    for permission in Permission:
        assert re.fullmatch(r"[a-z_]+:[a-z_]+", permission.value), permission


def render_matrix() -> str:
    """The Markdown table of docs/security.md, from the code."""
    columns = [*Role, "agent key"]
    lines = [
        "| permission | " + " | ".join(str(c) for c in columns) + " |",
        "|---|" + "|".join(":-:" for _ in columns) + "|",
    ]
    for permission in Permission:
        cells = ["✓" if permission in ROLE_PERMISSIONS[role] else "" for role in Role]
        cells.append("✓" if permission in AGENT_KEY_PERMISSIONS else "")
        lines.append(f"| `{permission.value}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_security_doc_shows_the_matrix_of_the_code() -> None:
    text = DOC.read_text()
    assert START in text, f"{DOC} lacks the {START} marker"
    assert END in text, f"{DOC} lacks the {END} marker"
    documented = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert documented == render_matrix(), (
        "docs/security.md is out of date; replace the table with the output of "
        "`python -m tests.auth.test_permissions`"
    )


if __name__ == "__main__":
    print(render_matrix())

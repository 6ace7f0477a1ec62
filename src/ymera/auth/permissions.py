"""Roles, permissions and the matrix between them (documented in docs/security.md).

Permissions are ``<domain>:<action>`` strings. Every protected endpoint names
exactly one through :func:`ymera.auth.dependencies.require`.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    DEVELOPER = "developer"
    VIEWER = "viewer"


class Permission(StrEnum):
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    API_KEYS_READ = "api_keys:read"
    API_KEYS_WRITE = "api_keys:write"
    API_KEYS_ADMIN = "api_keys:admin"
    EVENTS_READ = "events:read"
    AGENTS_READ = "agents:read"
    AGENTS_WRITE = "agents:write"
    AGENTS_OPERATE = "agents:operate"
    AGENTS_CONNECT = "agents:connect"
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    TASKS_OPERATE = "tasks:operate"
    TASKS_REPORT = "tasks:report"
    WORKFLOWS_READ = "workflows:read"
    WORKFLOWS_WRITE = "workflows:write"
    ROUTING_READ = "routing:read"
    ROUTING_WRITE = "routing:write"
    LEARNING_READ = "learning:read"
    LEARNING_WRITE = "learning:write"
    KNOWLEDGE_READ = "knowledge:read"
    KNOWLEDGE_WRITE = "knowledge:write"
    CHAT_READ = "chat:read"
    CHAT_WRITE = "chat:write"
    FILES_READ = "files:read"
    FILES_WRITE = "files:write"
    WORKSPACES_READ = "workspaces:read"
    WORKSPACES_WRITE = "workspaces:write"
    EDITS_REVIEW = "edits:review"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"
    MONITORING_READ = "monitoring:read"
    SYSTEM_ADMIN = "system:admin"


P = Permission

_READ_ALL = frozenset(p for p in Permission if p.value.endswith(":read"))

_VIEWER = (_READ_ALL - {P.USERS_READ}) | {P.API_KEYS_WRITE}

_DEVELOPER = _VIEWER | {
    P.AGENTS_WRITE,
    P.TASKS_WRITE,
    P.WORKFLOWS_WRITE,
    P.KNOWLEDGE_WRITE,
    P.CHAT_WRITE,
    P.FILES_WRITE,
    P.WORKSPACES_WRITE,
    P.EDITS_REVIEW,
}

_OPERATOR = _DEVELOPER | {
    P.USERS_READ,
    P.AGENTS_OPERATE,
    P.TASKS_OPERATE,
    P.ROUTING_WRITE,
    P.LEARNING_WRITE,
    P.WEBHOOKS_WRITE,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset(_OPERATOR),
    Role.DEVELOPER: frozenset(_DEVELOPER),
    Role.VIEWER: frozenset(_VIEWER),
}

# What an agent key may do: connect as its agent and work on its own tasks (the
# workspace permissions only on the workspace of a task it holds: ymera.code.access).
AGENT_KEY_PERMISSIONS: frozenset[Permission] = frozenset(
    {
        P.AGENTS_CONNECT,
        P.TASKS_REPORT,
        P.TASKS_READ,
        P.FILES_READ,
        P.FILES_WRITE,
        P.CHAT_READ,
        P.CHAT_WRITE,
        P.KNOWLEDGE_READ,
        P.KNOWLEDGE_WRITE,
        P.WORKSPACES_READ,
        P.WORKSPACES_WRITE,
    }
)


def role_permissions(role: str) -> frozenset[Permission]:
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()

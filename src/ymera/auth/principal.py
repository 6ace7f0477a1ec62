from __future__ import annotations

from dataclasses import dataclass, field

from ymera.auth.permissions import Permission


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (by token or user API key) or an agent (agent key)."""

    kind: str  # "user" | "agent"
    user_id: str
    role: str
    permissions: frozenset[Permission] = field(default_factory=frozenset)
    api_key_id: str | None = None
    agent_id: str | None = None
    username: str | None = None
    expires_at: float | None = None  # when the credential expires (epoch seconds), if it does

    @property
    def id(self) -> str:
        """Stable identity for rate limits and audit: key id for keys, user id otherwise."""
        if self.api_key_id:
            return f"key:{self.api_key_id}"
        return f"user:{self.user_id}"

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def is_admin(self) -> bool:
        return self.kind == "user" and self.role == "admin" and self.api_key_id is None

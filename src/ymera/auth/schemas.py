from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ymera.auth.permissions import Permission, Role

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
# Text the database stores must not contain NUL (PostgreSQL refuses it).
NO_NUL = r"^[^\x00]*$"


class TokenRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class TokenPair(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - OAuth2 token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str
    refresh_expires_in: int


class UserCreate(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=12, max_length=1024)
    role: Role = Role.VIEWER
    email: str | None = Field(default=None, max_length=320, pattern=NO_NUL)


class UserUpdate(BaseModel):
    role: Role | None = None
    password: str | None = Field(default=None, min_length=12, max_length=1024)
    is_active: bool | None = None
    email: str | None = Field(default=None, max_length=320, pattern=NO_NUL)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    username: str
    email: str | None
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class MeOut(BaseModel):
    kind: str
    user_id: str
    username: str | None
    role: str
    permissions: list[str]
    api_key_id: str | None
    agent_id: str | None


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    scopes: list[Permission] | None = Field(
        default=None,
        description="Permissions the key carries; default: all of the creator's. "
        "Ignored for agent keys, which get the fixed agent scope.",
    )
    expires_at: datetime | None = None
    agent_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=36,
        pattern=NO_NUL,
        description="Bind the key to this agent (an agent key).",
    )

    @field_validator("expires_at")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("expires_at must include a timezone")
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:  # e.g. 9999-12-31T23:00:00-05:00
            raise ValueError("expires_at is out of range") from exc


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str = Field(description="First characters of the key, to recognise it.")
    kind: str
    owner_id: str
    agent_id: str | None
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret. Shown once; store it now.")

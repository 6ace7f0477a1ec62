"""Settings: one root object with nested sections, read from YMERA_* env and .env.

Nested sections use a double underscore: ``YMERA_AUTH__ACCESS_TOKEN_TTL=900``.
The two most common knobs also have short aliases: ``YMERA_DATABASE_URL`` and
``YMERA_REDIS_URL``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = Field(
        default=None, description="URL clients use to reach this server (for links)."
    )
    graceful_shutdown_seconds: float = 10.0


class DatabaseSettings(BaseModel):
    echo: bool = False
    pool_size: int = 10
    max_overflow: int = 20
    sqlite_busy_timeout_ms: int = 30_000


class AuthSettings(BaseModel):
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "HMAC key for JWTs. Unset: generated once and kept in <data_dir>/secret_key. "
            "Set it explicitly (same value) when running several replicas."
        ),
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_ttl: int = Field(default=900, ge=30, description="Seconds.")
    refresh_token_ttl: int = Field(default=14 * 24 * 3600, ge=60, description="Seconds.")
    issuer: str = "ymera"
    bootstrap_admin: bool = Field(
        default=True,
        description="Create an admin with a random password printed once when no user exists.",
    )


class RateLimitSettings(BaseModel):
    enabled: bool = True
    default: str = Field(default="1200/minute", description="Per authenticated principal.")
    login: str = Field(default="20/minute", description="Per client address on /auth/token.")
    storage: Literal["auto", "memory", "redis"] = Field(
        default="auto", description="auto = Redis when YMERA_REDIS_URL is set, else memory."
    )


class EventSettings(BaseModel):
    relay_poll_interval: float = Field(
        default=1.0, gt=0, description="Fallback poll of the outbox relay, seconds."
    )
    relay_batch_size: int = Field(default=500, ge=1)
    sse_keepalive_seconds: float = Field(default=15.0, gt=0)
    retention_days: int = Field(default=30, ge=1)


class AgentSettings(BaseModel):
    heartbeat_timeout: float = Field(
        default=30.0, gt=0, description="Seconds of silence after which an agent is OFFLINE."
    )
    monitor_interval: float = Field(
        default=5.0, gt=0, description="How often the health monitor looks for silent agents."
    )


class LogSettings(BaseModel):
    level: str = "INFO"
    json_format: bool = Field(default=True, alias="json")


class Settings(BaseSettings):
    """Root settings. Every knob has a default that works on a laptop."""

    model_config = SettingsConfigDict(
        env_prefix="YMERA_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = Field(default=Path(".ymera"), description="Where embedded state lives.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: SQLite at <data_dir>/ymera.db. "
        "PostgreSQL: postgresql+asyncpg://user@host/db",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL for the event bus and rate limits. Unset: in-process."
    )
    redis_prefix: str = Field(default="ymera:", description="Prefix of every Redis key/channel.")
    environment: Literal["development", "production", "test"] = "development"

    server: ServerSettings = ServerSettings()
    db: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    events: EventSettings = EventSettings()
    agents: AgentSettings = AgentSettings()
    log: LogSettings = LogSettings()

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ymera.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def normalise_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``sqlite://`` URLs and pick the async driver."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite:///", "sqlite+aiosqlite:///"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def get_settings() -> Settings:
    return Settings()

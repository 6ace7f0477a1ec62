"""Settings: one root object with nested sections, read from YMERA_* env and .env.

Nested sections use a double underscore: ``YMERA_AUTH__ACCESS_TOKEN_TTL=900``.
The two most common knobs also have short aliases: ``YMERA_DATABASE_URL`` and
``YMERA_REDIS_URL``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Address `ymera serve` binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `ymera serve` binds.")
    public_url: str | None = Field(
        default=None,
        description="URL clients use to reach this server (behind a proxy, say); "
        "shown by `ymera serve`. Unset: http://HOST:PORT.",
    )
    graceful_shutdown_seconds: float = Field(
        default=10.0,
        ge=0,
        description="On SIGTERM, how long the whole shutdown may take: intake stops, "
        "requests and pushes in flight may finish, unfinished pushes are handed back. "
        "Open event streams end at once.",
    )
    ws_compression: bool = Field(
        default=False,
        description="Offer permessage-deflate on WebSockets. Off by default: worker "
        "frames are small, and compressing each costs more CPU than it saves on a LAN.",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Once `ymera serve` has started, move the objects loaded at start-up "
        "out of the garbage collector's sight (gc.freeze) and collect less often: full "
        "collections otherwise rescan every module's objects and took about a fifth of "
        "the server's CPU under load.",
    )


class DatabaseSettings(BaseModel):
    echo: bool = Field(default=False, description="Log every SQL statement.")
    pool_size: int = Field(default=10, ge=1, description="PostgreSQL connections kept open.")
    max_overflow: int = Field(
        default=20, ge=0, description="PostgreSQL connections opened beyond the pool under load."
    )
    ping_idle_seconds: float = Field(
        default=1.0,
        ge=0,
        description="PostgreSQL: check a pooled connection before use when it has been idle "
        "this long (seconds); connections in use moments ago are not checked (a check costs "
        "three round trips). 0 checks every time.",
    )
    sqlite_busy_timeout_ms: int = Field(
        default=30_000, ge=0, description="How long a SQLite writer waits for the lock."
    )
    sqlite_inline: bool = Field(
        default=True,
        description="Run SQLite calls on the event loop thread (far less overhead per "
        "statement) instead of a thread per connection.",
    )


class AuthSettings(BaseModel):
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "HMAC key for JWTs. Unset: generated once and kept in `<data_dir>/secret_key`. "
            "Set it explicitly (same value) when running several replicas."
        ),
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field(
        default="HS256", description="JWT signing algorithm."
    )
    access_token_ttl: int = Field(
        default=900, ge=30, description="Lifetime of an access token, seconds."
    )
    refresh_token_ttl: int = Field(
        default=14 * 24 * 3600, ge=60, description="Lifetime of a refresh token, seconds."
    )
    issuer: str = Field(default="ymera", description="`iss` claim of the JWTs.")
    bootstrap_admin: bool = Field(
        default=True,
        description="Create an admin with a random password printed once when no user exists.",
    )
    principal_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a resolved credential is reused (0: resolve every request). "
        "Changes to users and keys drop the cache at once (other replicas: on their event).",
    )


class RateLimitSettings(BaseModel):
    enabled: bool = Field(default=True, description="Enforce the limits (429 + Retry-After).")
    default: str = Field(default="1200/minute", description="Per authenticated principal.")
    login: str = Field(default="20/minute", description="Per client address on /auth/token.")
    storage: Literal["auto", "memory", "redis"] = Field(
        default="auto", description="auto = Redis when YMERA_REDIS_URL is set, else memory."
    )


class TaskSettings(BaseModel):
    lease_seconds: float = Field(
        default=30.0, gt=0, description="Lease of an assignment; renewed by worker heartbeats."
    )
    reaper_interval: float = Field(
        default=2.0, gt=0, description="How often expired leases and deadlines are swept."
    )
    dispatch_poll_interval: float = Field(
        default=1.0, gt=0, description="Fallback poll of the dispatcher, seconds."
    )
    claim_batch: int = Field(default=1024, ge=1, le=5000, description="Most tasks claimed at once.")
    writer_lanes: int = Field(
        default=2,
        ge=1,
        le=16,
        description="PostgreSQL: group-commit transactions a replica runs side by side "
        "(one waits for the database while another runs); the next lane takes writes only "
        "when the first has `writer_spill` queued. With the database on the same 2-core "
        "machine, 2 lanes took 6-10% more batched tasks per second and as many single "
        "submits as one; worth 2-4 when the database is on another host. SQLite has one "
        "writer.",
    )
    writer_spill: int = Field(
        default=128,
        ge=1,
        le=100_000,
        description="Writes queued in the first writer lane before the next lane takes any "
        "(light and moderate load keeps one large group commit); a batch submit counts as "
        "its tasks.",
    )
    max_attempts: int = Field(default=3, ge=1, description="Default attempts per task.")
    retry_initial: float = Field(default=1.0, ge=0, description="First retry backoff, seconds.")
    retry_factor: float = Field(
        default=2.0,
        ge=1,
        description="The backoff grows by this factor per attempt (jittered: half to all of it).",
    )
    retry_cap: float = Field(default=300.0, ge=0, description="Longest retry backoff, seconds.")
    idempotency_ttl: float = Field(
        default=86_400.0, gt=0, description="How long an Idempotency-Key is remembered, seconds."
    )


class PushSettings(BaseModel):
    """HTTP push agents: YMERA POSTs each task to the agent's endpoint."""

    timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for the agent.")
    retries: int = Field(
        default=3, ge=0, le=10, description="Retries of a POST that failed to connect or got 5xx."
    )
    retry_initial: float = Field(default=0.2, ge=0, description="First retry backoff, seconds.")
    breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failed deliveries that open an agent's circuit."
    )
    breaker_open_seconds: float = Field(
        default=30.0, gt=0, description="How long an open circuit refuses before a probe."
    )
    poll_interval: float = Field(
        default=1.0, gt=0, description="Fallback poll of the push dispatcher, seconds."
    )


class EventSettings(BaseModel):
    relay_poll_interval: float = Field(
        default=1.0,
        gt=0,
        description="Fallback wake-up of the outbox relay, seconds (each commit wakes it).",
    )
    sse_keepalive_seconds: float = Field(
        default=15.0, gt=0, description="Idle time before an SSE stream sends a keepalive."
    )
    retention_days: int = Field(default=30, ge=1, description="Events older than this are pruned.")


class AgentSettings(BaseModel):
    heartbeat_interval: float = Field(
        default=5.0, gt=0, description="How often connected workers are asked to heartbeat."
    )
    send_queue_size: int = Field(
        default=1000,
        ge=10,
        description="Frames queued per worker connection, beyond one per slot, before it is cut.",
    )
    heartbeat_timeout: float = Field(
        default=30.0, gt=0, description="Seconds of silence after which an agent is OFFLINE."
    )
    monitor_interval: float = Field(
        default=5.0, gt=0, description="How often the health monitor looks for silent agents."
    )
    health_check_enabled: bool = Field(
        default=True,
        description="Probe http agents' `GET <endpoint_url>/health` and a2a agents' agent card, "
        "and eject agents that keep failing.",
    )
    health_check_interval: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between two probes of one agent. Keep it below the heartbeat "
        "timeout: a successful probe counts as the agent's heartbeat.",
    )
    health_check_timeout: float = Field(
        default=2.0, gt=0, description="A probe slower than this (seconds) has failed."
    )
    ejection_consecutive_failures: int = Field(
        default=3, ge=1, description="Failed probes in a row that eject an agent (status ERROR)."
    )
    ejection_base_seconds: float = Field(
        default=30.0,
        gt=0,
        description="An ejection lasts this many seconds times the number of times the agent "
        "has been ejected.",
    )
    ejection_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest ejection, seconds."
    )
    metrics_minute_retention_hours: int = Field(
        default=48,
        ge=1,
        description="Hours per-agent minute buckets are kept; windows up to this long are "
        "computed from them, longer ones from hour buckets.",
    )
    metrics_hour_retention_days: int = Field(
        default=30, ge=7, description="Days per-agent hour buckets are kept."
    )
    metrics_max_agent_labels: int = Field(
        default=500,
        ge=0,
        description="Agents that get their own `agent` label on Prometheus series; "
        'the others are summed under `agent="_other"`.',
    )


class CodeSettings(BaseModel):
    """The code editor: workspaces under `<data_dir>/workspaces`, edits, git, analysis."""

    git_allowed_roots: str | None = Field(
        default=None,
        description="Directories (separated by `:` like PATH) under which local git "
        "repositories may be imported as workspaces. Unset: git import is disabled. "
        "Never a URL: only local paths under these roots are cloned.",
    )
    git_timeout: float = Field(
        default=120.0, gt=0, description="Seconds a git command (clone, commit...) may take."
    )
    max_file_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1,
        description="Largest file the editor reads or writes, bytes (larger: `too_large`).",
    )
    max_upload_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1,
        description="Largest archive upload (`POST /api/v1/workspaces/archive`), bytes.",
    )
    archive_max_total_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="Most bytes an archive may unpack to."
    )
    archive_max_members: int = Field(
        default=20_000,
        ge=1,
        description="Most entries (files, directories, links) an archive may hold.",
    )
    archive_max_ratio: float = Field(
        default=100.0,
        gt=1,
        description="Highest ratio of unpacked bytes to archive bytes (zip bombs), past 1 MiB.",
    )
    undo_depth: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="How many of a file's latest editor operations `undo` can take back.",
    )
    max_tree_entries: int = Field(
        default=20_000, ge=1, description="Most entries one file-tree listing returns."
    )
    analyze_edits: bool = Field(
        default=True,
        description="Analyse the touched files before and after each edit and attach the "
        "problems the edit introduced.",
    )
    analysis_max_files: int = Field(
        default=200,
        ge=0,
        description="Edits touching more analysable files than this are not analysed.",
    )
    analysis_timeout: float = Field(
        default=60.0, gt=0, description="Seconds the linter (ruff) may take per analysis."
    )

    def allowed_git_roots(self) -> list[Path]:
        """The configured roots, absolute and resolved (empty: git import disabled)."""
        if not self.git_allowed_roots:
            return []
        parts = [p.strip() for p in self.git_allowed_roots.split(":")]
        return [Path(p).resolve() for p in parts if p]


class FilesSettings(BaseModel):
    """The Files API (`/api/v1/files`): uploads kept in blob storage."""

    storage_url: str = Field(
        default="",
        description="Where file bodies are stored: empty = local disk under "
        "`<data_dir>/files`; `file:///abs/path`; or `s3://bucket/prefix?endpoint_url=...` "
        "(credentials from the AWS_* environment variables).",
    )
    max_upload_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1,
        description="Largest upload, bytes (larger: 413 `file_too_large`, nothing kept).",
    )
    quota_bytes: int = Field(
        default=10 * 1024**3,
        ge=0,
        description="Bytes each owner may keep in unexpired files (over: 413 `quota_exceeded`).",
    )
    quota_files: int = Field(
        default=10_000,
        ge=0,
        description="Unexpired files each owner may keep (over: 429 `too_many_files`).",
    )
    sweep_interval: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between passes deleting expired temporary files and their bodies.",
    )


class ChatSettings(BaseModel):
    """Chat sessions (`/api/v1/chat`) and their WebSocket."""

    send_queue_size: int = Field(
        default=1000,
        ge=10,
        description="Frames queued per chat connection; a client that reads slower than "
        "the session talks fills it and is cut with close code 4408.",
    )
    max_resume_gap: int = Field(
        default=1000,
        ge=1,
        description="Most missed messages a reconnecting client is sent; a larger gap gets "
        "a `reload` frame (read the history over REST instead).",
    )
    ping_interval: float = Field(
        default=20.0, gt=0, description="Seconds between the server's `ping` frames."
    )
    ping_timeout: float = Field(
        default=20.0,
        gt=0,
        description="A client silent this long after a `ping` (no `pong`, no frame) is cut "
        "with close code 4410.",
    )
    resync_interval: float = Field(
        default=5.0,
        gt=0,
        description="How often an idle session checks the database for messages the bus "
        "failed to carry (a failed publish), seconds.",
    )
    presence_ttl: float = Field(
        default=30.0,
        gt=0,
        description="Every replica announces who is connected to it every third of this, "
        "seconds; participants of a replica not heard from this long (it crashed) are "
        "shown offline.",
    )
    history_for_agents: int = Field(
        default=20,
        ge=0,
        le=200,
        description="Latest messages of the session sent along in a `chat` task's input.",
    )
    max_message_chars: int = Field(
        default=32_000, ge=1, description="Longest message content, characters."
    )


class RoutingSettings(BaseModel):
    learning_half_life: float | None = Field(
        default=86400.0,
        gt=0,
        description="Seconds after which a learned outcome counts half (drift); null: never. "
        "Reset the learning stats after changing it.",
    )
    prior_strength: float = Field(
        default=4.0,
        ge=0,
        description="Pseudo-observations an agent's prior pools from its peers (0: no sharing).",
    )
    refresh_interval: float = Field(
        default=5.0,
        gt=0,
        description="How often a replica reloads policies and learned stats (others' outcomes).",
    )
    ejection_consecutive_failures: int = Field(
        default=5,
        ge=1,
        description="The fewest failures in a row that eject an agent (and then only as "
        "many as make the run improbable: at ejection_alpha without a record, at "
        "ejection_typed_alpha with one).",
    )
    ejection_window: int = Field(
        default=20, ge=5, description="Recent outcomes tested against an agent's own record."
    )
    ejection_alpha: float = Field(
        default=1e-3,
        gt=0,
        lt=1,
        description="Significance at which a success-rate drop (or a run of failures) ejects.",
    )
    ejection_typed_alpha: float = Field(
        default=1e-5,
        gt=0,
        lt=1,
        description="Significance at which a run of failures or a drop ejects when judged at "
        "the success rates learned for the tasks' types (checked after every failure).",
    )
    ejection_base_seconds: float = Field(
        default=30.0, gt=0, description="An ejection lasts this x the times ejected."
    )
    ejection_max_seconds: float = Field(
        default=300.0, gt=0, description="The longest ejection, seconds."
    )


class KnowledgeSettings(BaseModel):
    record_tasks: bool = Field(
        default=True,
        description="Record an experience for every task that ends (SUCCEEDED, FAILED, DEAD), "
        "in the transaction that ends it.",
    )
    summary_chars: int = Field(
        default=2000,
        ge=100,
        le=100_000,
        description="A recorded experience keeps this much of the task's input (JSON text).",
    )
    notes_chars: int = Field(
        default=2000,
        ge=100,
        le=100_000,
        description="A recorded experience keeps this much of the result or the error message.",
    )
    semantic: bool = Field(
        default=False,
        description="Rank by meaning too (embeddings; needs the `semantic` extra). Every "
        "recorded task is then embedded: about 3 ms of CPU each on 2 cores, which "
        "dispatching thousands of tasks a second cannot afford. false: text search only.",
    )
    semantic_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Hybrid ranking: score = (1 - w) x normalised text rank + w x cosine "
        "similarity.",
    )
    embed_interval: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between passes embedding experiences recorded from tasks.",
    )


class LogSettings(BaseModel):
    # Both the alias (YMERA_LOG__JSON) and the field name (json_format) are accepted.
    model_config = ConfigDict(populate_by_name=True)

    level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    json_format: bool = Field(
        default=True, alias="json", description="JSON lines (true) or console text (false)."
    )


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

    data_dir: Path = Field(
        default=Path(".ymera"),
        description="Where embedded state lives (SQLite database, generated JWT key); "
        "relative to the working directory.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: SQLite at `<data_dir>/ymera.db`. "
        "PostgreSQL: `postgresql://user:password@host/db` (the asyncpg driver is implied).",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL for the event bus and rate limits. Unset: in-process."
    )
    redis_prefix: str = Field(default="ymera:", description="Prefix of every Redis key/channel.")
    environment: Literal["development", "production", "test"] = Field(
        default="development", description="A label for this deployment (informational)."
    )

    server: ServerSettings = ServerSettings()
    db: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    events: EventSettings = EventSettings()
    tasks: TaskSettings = TaskSettings()
    push: PushSettings = PushSettings()
    agents: AgentSettings = AgentSettings()
    code: CodeSettings = CodeSettings()
    files: FilesSettings = FilesSettings()
    chat: ChatSettings = ChatSettings()
    log: LogSettings = LogSettings()
    routing: RoutingSettings = RoutingSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()

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

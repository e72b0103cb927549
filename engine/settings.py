"""Configuration read from ``LAZARUS_*`` environment variables.

A bad value raises :class:`~engine.errors.ConfigError` whose one-line message
names the variable, so the CLI can print it instead of a traceback.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta
from enum import StrEnum

from pydantic import (
    AmqpDsn,
    Field,
    PostgresDsn,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import ConfigError
from engine.filters import parse_age

_NAMESPACE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
MIN_TOKEN_LENGTH = 16  # a guessable token would make the admin's auth a formality
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NEVER = "never"


class QueueType(StrEnum):
    """RabbitMQ queue type of every queue Lazarus declares."""

    QUORUM = "quorum"  # replicated (Raft); the default, survives a node loss in a cluster
    CLASSIC = "classic"  # single-node queue; cheaper, no delivery limit


class EventLoop(StrEnum):
    """Event loop of the ``lazarus`` commands and workers."""

    AUTO = "auto"  # uvloop if installed (it is a dependency on Linux and macOS), else asyncio
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


class Settings(BaseSettings):
    """Everything an engine process needs to find its broker, database and names."""

    model_config = SettingsConfigDict(env_prefix="LAZARUS_", frozen=True, extra="ignore")

    amqp_url: AmqpDsn = Field(default=AmqpDsn("amqp://guest:guest@127.0.0.1:5672/"))
    database_url: PostgresDsn = Field(
        default=PostgresDsn("postgresql://postgres@127.0.0.1:5432/postgres")
    )
    namespace: str = "lazarus"
    queue_type: QueueType = QueueType.QUORUM
    # A message redelivered more often than this (the worker died while running it)
    # is dead-lettered with reason "crash loop" instead of being run again.
    max_redeliveries: int = Field(default=5, ge=1, le=1000)
    # Largest accepted message body; bigger ones are dead-lettered as malformed.
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    # Seconds a stopping worker waits for in-flight jobs before leaving them to redelivery.
    shutdown_grace: float = Field(default=30.0, ge=0)
    # Seconds to wait for RabbitMQ or PostgreSQL to answer a new connection.
    connect_timeout: float = Field(default=10.0, gt=0, le=600)
    event_loop: EventLoop = EventLoop.AUTO
    # Seconds a job of a type this worker does not know keeps going back to its queue for
    # a worker that does (a rolling deploy) before it dies as "unknown job type"; it keeps
    # going back while the workers' registry shows a live worker that knows the type.
    unknown_type_grace: float = Field(default=300.0, ge=0, le=7 * 86400)
    # The admin HTTP server (lazarus admin): see the README's Security section.
    admin_token: SecretStr | None = None
    # A second token that may only read (GET) the API and the dashboard; optional.
    admin_read_token: SecretStr | None = None
    # Host names (Host header) the admin answers to, comma-separated; loopback names always.
    admin_hosts: str = ""
    admin_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # Mark the session cookie Secure (it is anyway when a request arrives over https).
    admin_secure_cookies: bool = False
    # Seconds any one admin query may run in PostgreSQL before it is cancelled.
    admin_statement_timeout: float = Field(default=30.0, gt=0, le=3600)
    admin_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # Retention: ages such as 7d, or "never". Rows still dead always wait for a person.
    retain_jobs: str = "7d"  # succeeded, cancelled and dead job rows, by last change
    retain_audit: str = "90d"
    retain_dead_history: str = "30d"  # dead-letter rows requeued or deleted, by that change
    retain_dead_copies: str = "30d"  # copies on <ns>.dead.retained, by death time
    prune_interval: float = Field(default=3600.0, ge=1, le=7 * 86400)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not _NAMESPACE.match(value):
            raise ValueError(
                "must be lower-case letters, digits or '_', start with a letter or '_', "
                "at most 41 characters (it names a PostgreSQL schema)"
            )
        return value

    @field_validator("retain_jobs", "retain_audit", "retain_dead_history", "retain_dead_copies")
    @classmethod
    def _check_age(cls, value: str) -> str:
        if value.strip().lower() != NEVER:
            parse_age(value)  # ValueError says what an age looks like
        return value

    def retention(self, kept: str) -> timedelta | None:
        """The age past which ``retain_<kept>`` is pruned; None for "never"."""
        value: str = getattr(self, f"retain_{kept}")
        return None if value.strip().lower() == NEVER else parse_age(value)

    @field_validator("admin_token", "admin_read_token", mode="before")
    @classmethod
    def _check_token(cls, value: object) -> object:
        if value in (None, ""):
            return None  # unset (an empty variable counts as unset)
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if len(text.strip()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters (not blanks)")
        return value

    @field_validator("admin_read_token")
    @classmethod
    def _check_read_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        admin = info.data.get("admin_token")
        if value is not None and admin is not None and same_secret(admin, value):
            raise ValueError(
                "must differ from LAZARUS_ADMIN_TOKEN (a read-only login would be an admin one)"
            )
        return value

    @property
    def admin_host_names(self) -> tuple[str, ...]:
        """Loopback names plus ``admin_hosts``: what a request's Host may name."""
        extra = (h.strip().lower() for h in self.admin_hosts.split(","))
        return tuple(dict.fromkeys([*LOOPBACK_HOSTS, *(h for h in extra if h)]))

    @property
    def amqp_dsn(self) -> str:
        return str(self.amqp_url)

    @property
    def database_dsn(self) -> str:
        return str(self.database_url)


def same_secret(one: SecretStr, other: SecretStr) -> bool:
    """Whether two tokens are the same, compared in constant time."""
    return hmac.compare_digest(
        hashlib.sha256(one.get_secret_value().encode()).digest(),
        hashlib.sha256(other.get_secret_value().encode()).digest(),
    )


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus ``overrides``); raise ConfigError naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise ConfigError(f"LAZARUS_{field.upper()}: {first['msg']}") from None

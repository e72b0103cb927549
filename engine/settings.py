"""Configuration read from ``LAZARUS_*`` environment variables.

A bad value raises :class:`~engine.errors.ConfigError` whose one-line message
names the variable, so the CLI can print it instead of a traceback.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import AmqpDsn, Field, PostgresDsn, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import ConfigError

_NAMESPACE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


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
    admin_token: str | None = None
    event_loop: EventLoop = EventLoop.AUTO

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not _NAMESPACE.match(value):
            raise ValueError(
                "must be lower-case letters, digits or '_', start with a letter or '_', "
                "at most 41 characters (it names a PostgreSQL schema)"
            )
        return value

    @property
    def amqp_dsn(self) -> str:
        return str(self.amqp_url)

    @property
    def database_dsn(self) -> str:
        return str(self.database_url)


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus ``overrides``); raise ConfigError naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise ConfigError(f"LAZARUS_{field.upper()}: {first['msg']}") from None

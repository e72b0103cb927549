"""Lazarus: an asyncio job engine on RabbitMQ with a PostgreSQL dead-letter table."""

from engine.client import Client
from engine.context import JobContext
from engine.errors import (
    ConfigError,
    JobFailure,
    JobNotFound,
    JobStateConflict,
    LazarusError,
    MessageError,
    Permanent,
    PublishFailed,
    SchemaMissing,
    ServiceUnavailable,
    TopologyError,
    Transient,
    UnknownJobType,
)
from engine.message import JobMessage
from engine.registry import handler
from engine.retry import RetryPolicy
from engine.settings import QueueType, Settings, load_settings
from engine.states import JobState
from engine.worker import Worker

__all__ = [
    "Client",
    "ConfigError",
    "JobContext",
    "JobFailure",
    "JobMessage",
    "JobNotFound",
    "JobState",
    "JobStateConflict",
    "LazarusError",
    "MessageError",
    "Permanent",
    "PublishFailed",
    "QueueType",
    "RetryPolicy",
    "SchemaMissing",
    "ServiceUnavailable",
    "Settings",
    "TopologyError",
    "Transient",
    "UnknownJobType",
    "Worker",
    "handler",
    "load_settings",
]

"""Lazarus: an asyncio job engine on RabbitMQ with a PostgreSQL dead-letter table."""

from engine.admin.facade import Admin
from engine.admin.lifecycle import Lifecycle
from engine.client import Client, Enqueued
from engine.context import JobContext
from engine.errors import (
    ConfigError,
    JobFailure,
    JobNotFound,
    JobStateConflict,
    JobStopped,
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
from engine.filters import DeadFilter
from engine.message import JobMessage
from engine.registry import handler
from engine.retry import Reanimation, RetryPolicy
from engine.settings import QueueType, Settings, load_settings
from engine.states import JobState, RequeueMode
from engine.worker.consume import Worker

__all__ = [
    "Admin",
    "Client",
    "ConfigError",
    "DeadFilter",
    "Enqueued",
    "JobContext",
    "JobFailure",
    "JobMessage",
    "JobNotFound",
    "JobState",
    "JobStateConflict",
    "JobStopped",
    "LazarusError",
    "Lifecycle",
    "MessageError",
    "Permanent",
    "PublishFailed",
    "QueueType",
    "Reanimation",
    "RequeueMode",
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

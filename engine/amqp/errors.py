"""How the engine tells that RabbitMQ is away, asked of the broker wing rather than of
aio-pika: callers outside ``engine.amqp`` catch this tuple and never name a driver class."""

from __future__ import annotations

import aiormq

from engine.errors import ServiceUnavailable

AMQP_UNAVAILABLE = (
    OSError,
    ServiceUnavailable,
    aiormq.exceptions.AMQPConnectionError,  # the connection or its channel closed
)

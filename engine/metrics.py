"""Prometheus metrics of workers and recorders (the admin server adds its own).

Names follow the Prometheus conventions: ``_total`` counters, durations in seconds,
labels with bounded values only (queue, job type, outcome; never a job id).
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

JOBS_STARTED = Counter(
    "lazarus_jobs_started_total", "Runs of a handler started.", ["queue", "job_type"]
)
JOBS_FINISHED = Counter(
    "lazarus_jobs_finished_total",
    "Runs that ended, by outcome: succeeded, retried (through the broker), dead, "
    "suspended (on failure), stopped (by a person), parked (its type is paused).",
    ["queue", "job_type", "outcome"],
)
JOB_FAILURES = Counter(
    "lazarus_job_failures_total", "Runs whose handler raised.", ["queue", "job_type"]
)
JOB_DURATION = Histogram(
    "lazarus_job_duration_seconds",
    "Time a run spent in its handler, in-process retries included.",
    ["queue", "job_type"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300),
)
JOBS_IN_FLIGHT = Gauge("lazarus_jobs_in_flight", "Deliveries being handled now.", ["queue"])
DEAD_LETTERS_PUBLISHED = Counter(
    "lazarus_dead_letters_published_total",
    "Dead letters a worker published to the dead-letter exchange, by reason.",
    ["queue", "reason"],
)
DEAD_LETTERS_RECORDED = Counter(
    "lazarus_dead_letters_recorded_total", "Dead letters the recorder stored in PostgreSQL."
)
WORKFLOWS_STARTED = Counter(
    "lazarus_workflows_started_total", "Workflows started.", ["workflow_type"]
)
WORKFLOWS_SUCCEEDED = Counter(
    "lazarus_workflows_succeeded_total",
    "Workflows whose last step succeeded (counted by the worker that ran it).",
    ["workflow_type"],
)
WORKFLOW_STEPS_SUCCEEDED = Counter(
    "lazarus_workflow_steps_succeeded_total",
    "Steps and work items whose success was recorded (a duplicate is not counted).",
    ["workflow_type"],
)
WORKFLOW_STEPS_RELEASED = Counter(
    "lazarus_workflow_steps_released_total",
    "Steps and work items released (made pending) because what they waited on succeeded.",
    ["workflow_type"],
)
RECONNECTS = Counter(
    "lazarus_broker_reconnects_total", "Times the connection to RabbitMQ was re-established."
)


@functools.lru_cache(maxsize=4096)
def labelled(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, cached: the lookup costs more than the count itself."""
    return metric.labels(*values)

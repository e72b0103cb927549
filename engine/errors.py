"""The exceptions Lazarus raises, as one tree::

LazarusError
├── ConfigError            a LAZARUS_* variable has a bad value
├── ServiceUnavailable     RabbitMQ or PostgreSQL does not answer
│   └── SchemaMissing      the namespace schema is not migrated
├── TopologyError          a queue exists with other arguments than ours
├── PublishFailed          the broker refused, returned or did not confirm a publish
├── UnknownJobType         no handler registered under a job type
├── MessageError           a message body breaks the wire format (carries a reason)
├── JobNotFound            no job / dead letter with that id
├── JobStateConflict       the job is no longer in the state the operation needs
├── JobStopped             a person stopped the job while it ran (its checkpoint was refused)
├── NeedsPostgres          a dashboard-only query asked of a store that is not PostgreSQL
└── JobFailure             raised by handlers to control retries
    ├── Permanent          never retry: dead-letter at once
    └── Transient          retry in-process, then through the broker
"""

from __future__ import annotations


class LazarusError(Exception):
    """Base of every error Lazarus raises on purpose."""


class ConfigError(LazarusError):
    """A configuration value is invalid; the message names the variable."""


class ServiceUnavailable(LazarusError):
    """RabbitMQ or PostgreSQL cannot be reached."""


class SchemaMissing(ServiceUnavailable):
    """The PostgreSQL schema of the namespace has not been created by ``lazarus migrate``."""


class TopologyError(LazarusError):
    """A queue or exchange already exists with arguments other than the ones Lazarus needs."""


class PublishFailed(LazarusError):
    """A publish was not confirmed: returned as unroutable, nacked, or the channel closed."""


class UnknownJobType(LazarusError):
    """No handler is registered for a job type."""


class MessageError(LazarusError):
    """A message body does not follow the wire format; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobNotFound(LazarusError):
    """No job or dead letter has the given id."""


class JobStateConflict(LazarusError):
    """The job is no longer in the state an operation requires (someone else got there first)."""


class WorkflowNotFound(LazarusError):
    """No workflow has the given id."""


class WorkflowStateConflict(LazarusError):
    """The workflow is not in a state the operation can act on."""


class JobFailure(Exception):
    """Base for exceptions a handler raises to say how its failure should be treated."""


class Permanent(JobFailure):
    """The job can never succeed as it is: dead-letter it without retrying."""


class Transient(JobFailure):
    """A passing failure: retry in-process with backoff, then through the broker."""


class JobStopped(LazarusError):
    """The job's row no longer says this run is going on: a person suspended or cancelled
    it (or a later generation replaced it). Raised by ``JobContext.checkpoint``; the run
    ends as stopped, never as a failure to retry."""


class NeedsPostgres(LazarusError):
    """A dashboard-only query (groups, activity, capped counts, sessions, pruning,
    migrations) asked of a store that is not the PostgreSQL one."""

-- Dead letters: one row per death of a job generation, kept as history after a requeue.
CREATE TABLE dead_letters (
    id                bigserial PRIMARY KEY,
    job_id            text        NOT NULL,
    generation        integer     NOT NULL,
    job_type          text        NOT NULL,            -- '' when the body could not be decoded
    queue             text        NOT NULL,
    payload           jsonb,
    body              bytea       NOT NULL,            -- the message exactly as it was published
    headers           jsonb       NOT NULL DEFAULT '{}',
    attempts          integer     NOT NULL,
    max_retries       integer,
    reason            text        NOT NULL,
    error_type        text        NOT NULL,
    error_message     text        NOT NULL,
    traceback         text        NOT NULL DEFAULT '',
    checkpoint        jsonb,
    enqueued_at       timestamptz,
    died_at           timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    worker            text        NOT NULL DEFAULT '',
    status            text        NOT NULL DEFAULT 'dead'
                      CHECK (status IN ('dead', 'requeue_pending', 'requeued', 'deleted')),
    status_changed_at timestamptz,
    status_changed_by text,
    CONSTRAINT dead_letters_one_row_per_generation UNIQUE (job_id, generation)
);

-- Listing newest first, filtered by status and one more column; keyset on id.
CREATE INDEX dead_letters_status_id ON dead_letters (status, id DESC);
CREATE INDEX dead_letters_type_id ON dead_letters (job_type, id DESC);
CREATE INDEX dead_letters_queue_id ON dead_letters (queue, id DESC);
CREATE INDEX dead_letters_error_id ON dead_letters (error_type, id DESC);
CREATE INDEX dead_letters_died_at ON dead_letters (died_at);

-- Requeues waiting for the broker's confirm: written in the same transaction as the
-- status change, published by the relay, deleted once confirmed.
CREATE TABLE requeue_outbox (
    id             bigserial PRIMARY KEY,
    dead_letter_id bigint      NOT NULL REFERENCES dead_letters (id) ON DELETE CASCADE,
    job_id         text        NOT NULL,
    queue          text        NOT NULL,
    body           bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Who requeued, deleted or purged what, and how many.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,
    action   text        NOT NULL,
    selector jsonb       NOT NULL,
    count    integer     NOT NULL
);

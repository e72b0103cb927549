-- Job states. One row per job (its latest generation); written by workers in batches
-- and by people through compare-and-set updates.
CREATE TABLE jobs (
    job_id             text        PRIMARY KEY,
    generation         integer     NOT NULL,
    -- Order of transitions within a generation: attempt * 4 + phase (1 running,
    -- 2 retrying, 3 final). A person's stop uses 2^30, above anything a worker reports,
    -- so a late failure can never overwrite it.
    seq                integer     NOT NULL,
    -- Deliveries of this attempt after a worker died: a crash-redelivered copy may
    -- claim a run its dead worker had claimed; a duplicate copy may not.
    redeliveries       integer     NOT NULL DEFAULT 0,
    job_type           text        NOT NULL,
    queue              text        NOT NULL,
    state              text        NOT NULL CHECK (state IN
                       ('pending', 'running', 'retrying', 'succeeded', 'dead', 'suspended',
                        'cancelled')),
    attempt            integer     NOT NULL DEFAULT 0,
    max_retries        integer,
    payload            jsonb,
    checkpoint         jsonb,
    suspend_on_failure boolean,
    error_type         text,
    error_message      text,
    traceback          text,
    cause              text,       -- why it stopped: 'Requested by user' or the exception
    stopped_by         text,
    worker             text,
    created_at         timestamptz NOT NULL,
    started_at         timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_state_updated ON jobs (state, updated_at DESC);
CREATE INDEX jobs_type_updated ON jobs (job_type, updated_at DESC);
CREATE INDEX jobs_queue_updated ON jobs (queue, updated_at DESC);

-- Paused queues: workers stop consuming them within a poll interval.
CREATE TABLE queue_pauses (
    queue     text        PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text        NOT NULL,
    reason    text        NOT NULL
);

-- The outbox also carries resumed jobs, which have no dead-letter row.
ALTER TABLE requeue_outbox ALTER COLUMN dead_letter_id DROP NOT NULL;

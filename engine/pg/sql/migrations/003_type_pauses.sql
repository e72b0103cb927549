-- Paused job types: workers park their jobs (in <ns>.parked.<type>) instead of running them.
CREATE TABLE type_pauses (
    job_type  text        PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text        NOT NULL,
    reason    text        NOT NULL
);

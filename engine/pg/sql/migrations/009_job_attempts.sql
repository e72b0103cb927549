-- Every failed attempt of a job, not only the last error its row keeps: each applied
-- report that carries an error (retrying, dead, suspended) adds one row, in the statement
-- of the report (report_transitions). A report sent again after a lost reply finds its
-- row and adds none. Texts are bounded as a dead letter's headers are (engine.message).
CREATE TABLE job_attempts (
    job_id        text        NOT NULL,
    generation    integer     NOT NULL,
    attempt       integer     NOT NULL,
    outcome       text        NOT NULL CHECK (outcome IN ('retrying', 'dead', 'suspended')),
    error_type    text        NOT NULL,
    error_message text        NOT NULL,
    traceback     text        NOT NULL,
    worker        text,
    at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, generation, attempt, outcome)
);
-- Retention finds old rows by time.
CREATE INDEX job_attempts_at ON job_attempts (at);

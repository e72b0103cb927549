-- Workers register themselves: who handles which job types on which queues, so people,
-- the dashboard and the engine can see it. A row per process, refreshed by a heartbeat.
CREATE TABLE workers (
    worker_id  text        PRIMARY KEY,  -- host:pid
    host       text        NOT NULL,
    pid        integer     NOT NULL,
    version    text        NOT NULL,
    queues     text[]      NOT NULL,     -- queues it consumes
    job_types  jsonb       NOT NULL,     -- {job type: the queue its handler declares}
    started_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    stopped_at timestamptz               -- set by a clean stop; a killed worker just goes quiet
);
CREATE INDEX workers_last_seen ON workers (last_seen DESC);

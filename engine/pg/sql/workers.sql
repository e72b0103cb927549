-- Named queries of the workers' registry (migration 006).

-- name: register_worker
INSERT INTO workers (worker_id, host, pid, version, queues, job_types, started_at, last_seen)
VALUES ($1, $2, $3, $4, $5, $6, now(), now())
ON CONFLICT (worker_id) DO UPDATE SET
    host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version,
    queues = EXCLUDED.queues, job_types = EXCLUDED.job_types, started_at = now(),
    last_seen = now(), stopped_at = NULL;

-- name: worker_seen
UPDATE workers SET last_seen = now(), stopped_at = NULL WHERE worker_id = $1;

-- name: worker_stopped
UPDATE workers SET last_seen = now(), stopped_at = now() WHERE worker_id = $1;

-- name: list_workers
-- Workers seen since $1 (running ones first, newest first), and those that stopped since.
SELECT *, stopped_at IS NULL AND last_seen >= $2 AS alive FROM workers
 WHERE last_seen >= $1 ORDER BY (stopped_at IS NULL AND last_seen >= $2) DESC, last_seen DESC
 LIMIT $3;

-- name: count_workers
SELECT count(*) FROM workers WHERE last_seen < $1;

-- name: prune_workers
DELETE FROM workers WHERE worker_id IN (
    SELECT worker_id FROM workers WHERE last_seen < $1 LIMIT $2);

-- name: known_routes
-- The queue of each job type, as the workers seen most recently declare it.
SELECT DISTINCT ON (t.key) t.key AS job_type, t.value AS queue
  FROM workers w, jsonb_each_text(w.job_types) t
 WHERE w.last_seen >= $1
 ORDER BY t.key, (w.stopped_at IS NULL) DESC, w.last_seen DESC;

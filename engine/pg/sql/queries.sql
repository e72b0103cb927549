-- Named queries; store.py loads them by name. Unqualified tables resolve through
-- the connection's search_path, which is the namespace schema.

-- name: insert_dead_letters
-- One round trip for a whole batch; a second copy of a death is ignored. JSON values come
-- wrapped (engine.pg.jsonb says why).
INSERT INTO dead_letters (
    job_id, generation, job_type, queue, payload, body, headers, attempts, max_retries,
    reason, error_type, error_message, traceback, checkpoint, enqueued_at, died_at, worker,
    workflow_id
)
SELECT * FROM unnest(
    $1::text[], $2::integer[], $3::text[], $4::text[], $5::jsonb[], $6::bytea[], $7::jsonb[],
    $8::integer[], $9::integer[], $10::text[], $11::text[], $12::text[], $13::text[],
    $14::jsonb[], $15::timestamptz[], $16::timestamptz[], $17::text[], $18::text[]
)
ON CONFLICT (job_id, generation) DO NOTHING;

-- name: stored_death
-- A redelivered copy of a job whose death is stored: what its dead letter carried.
SELECT body, headers, traceback FROM dead_letters WHERE job_id = $1 AND generation = $2;

-- name: history
SELECT * FROM dead_letters WHERE job_id = $1 ORDER BY generation;

-- name: mark_requeue_pending
-- The compare-and-set that makes concurrent requeues of one job give one winner. A dead
-- letter whose job a person stopped, or which has a later generation, is not requeued:
-- that would run a stopped job again, or give one job two live generations. Nor is one
-- whose queue no queue can have (a forged header, stored as '(invalid)'): its publish
-- could never be routed. The pattern is engine.message's queue name check.
UPDATE dead_letters
   SET status = 'requeue_pending', status_changed_at = now(), status_changed_by = $2
 WHERE id = ANY($1::bigint[]) AND status = 'dead' AND job_type <> ''
   AND queue ~ '^[A-Za-z0-9_.-]{1,100}$'
   AND NOT EXISTS (
       SELECT 1 FROM jobs j
        WHERE j.job_id = dead_letters.job_id
          AND (j.generation > dead_letters.generation
               OR (j.generation = dead_letters.generation
                   AND j.state IN ('suspended', 'cancelled'))))
RETURNING id, job_id, generation, job_type, queue, payload, max_retries, enqueued_at,
          workflow_id,
          -- the latest checkpoint the job saved, else the one its message carried
          COALESCE((SELECT j.checkpoint FROM jobs j
                     WHERE j.job_id = dead_letters.job_id
                       AND j.generation = dead_letters.generation), checkpoint) AS checkpoint;

-- name: insert_outbox
-- Staged publishes of any kind, written in the transaction of the change they publish.
INSERT INTO outbox (kind, dead_letter_id, job_id, queue, body, run_at)
SELECT * FROM unnest(
    $1::text[], $2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::timestamptz[]
);

-- name: claim_outbox
SELECT id, kind, dead_letter_id, job_id, queue, body, run_at
  FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED;

-- name: finish_outbox
-- A sent requeue's dead letter becomes 'requeued'; other kinds have none.
WITH sent AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]) RETURNING dead_letter_id)
UPDATE dead_letters SET status = 'requeued'
 WHERE id IN (SELECT dead_letter_id FROM sent) AND status = 'requeue_pending';

-- name: mark_deleted
UPDATE dead_letters
   SET status = 'deleted', status_changed_at = now(), status_changed_by = $2
 WHERE id = ANY($1::bigint[]) AND status = 'dead';

-- name: purge
DELETE FROM dead_letters
 WHERE died_at < $1 AND status <> 'requeue_pending';

-- name: audit
INSERT INTO audit_log (actor, action, selector, count, state, finished_at)
VALUES ($1, $2, $3, $4, 'done', now());

-- name: audit_begin
INSERT INTO audit_log (actor, action, selector, count, state) VALUES ($1, $2, $3, 0, 'running')
RETURNING id;

-- name: audit_progress
UPDATE audit_log
   SET count = $2, state = $3, finished_at = CASE WHEN $3 = 'running' THEN NULL ELSE now() END
 WHERE id = $1;

-- name: audit_recent
SELECT id, at, actor, action, selector, count, state, finished_at FROM audit_log
 WHERE $2::bigint IS NULL OR id < $2 ORDER BY id DESC LIMIT $1;

-- name: last_dead_id
SELECT coalesce(max(id), 0) FROM dead_letters;

-- name: dead_letters_estimate
-- PostgreSQL's estimate of the rows in dead_letters (0 before its first ANALYZE).
SELECT greatest(reltuples, 0)::float8 FROM pg_class WHERE oid = 'dead_letters'::regclass;

-- name: report_transitions
-- Worker-reported states, one statement per batch. A row changes only if the new
-- (generation, seq, redeliveries) is later than what it holds, or if it holds this very
-- report (same token: sent again after a lost reply); RETURNING says which were applied.
-- An applied report that carries an error (retrying, dead, suspended) adds its attempt to
-- job_attempts in the same statement, its texts bounded ($21-$23); one sent again finds
-- its row there and adds none. JSON values come wrapped (engine.pg.jsonb says why).
WITH applied AS (
INSERT INTO jobs AS j (
    job_id, generation, seq, redeliveries, job_type, queue, state, attempt, max_retries,
    payload, suspend_on_failure, error_type, error_message, traceback, cause, worker,
    created_at, started_at, checkpoint, token, updated_at
)
SELECT *, now() FROM unnest(
    $1::text[], $2::integer[], $3::integer[], $4::integer[], $5::text[], $6::text[],
    $7::text[], $8::integer[], $9::integer[], $10::jsonb[], $11::boolean[], $12::text[],
    $13::text[], $14::text[], $15::text[], $16::text[], $17::timestamptz[], $18::timestamptz[],
    $19::jsonb[], $20::text[]
)
ON CONFLICT (job_id) DO UPDATE SET
    generation = EXCLUDED.generation, seq = EXCLUDED.seq, redeliveries = EXCLUDED.redeliveries,
    state = EXCLUDED.state, attempt = EXCLUDED.attempt, max_retries = EXCLUDED.max_retries,
    payload = COALESCE(EXCLUDED.payload, j.payload),
    suspend_on_failure = EXCLUDED.suspend_on_failure,
    -- The last error of this generation stays while it runs or retries; a success or a
    -- new generation starts clean (a job that succeeded shows no old error).
    error_type = CASE WHEN EXCLUDED.state = 'succeeded' OR EXCLUDED.generation <> j.generation
                      THEN EXCLUDED.error_type ELSE COALESCE(EXCLUDED.error_type, j.error_type) END,
    error_message = CASE WHEN EXCLUDED.state = 'succeeded' OR EXCLUDED.generation <> j.generation
                         THEN EXCLUDED.error_message
                         ELSE COALESCE(EXCLUDED.error_message, j.error_message) END,
    traceback = CASE WHEN EXCLUDED.state = 'succeeded' OR EXCLUDED.generation <> j.generation
                     THEN EXCLUDED.traceback ELSE COALESCE(EXCLUDED.traceback, j.traceback) END,
    cause = EXCLUDED.cause, worker = EXCLUDED.worker,
    started_at = COALESCE(EXCLUDED.started_at, j.started_at), updated_at = now(),
    -- A run starts from the checkpoint its message carries; other reports keep the saved one.
    checkpoint = CASE WHEN EXCLUDED.state = 'running' THEN EXCLUDED.checkpoint
                      ELSE j.checkpoint END,
    token = EXCLUDED.token
WHERE (EXCLUDED.generation, EXCLUDED.seq, EXCLUDED.redeliveries)
    > (j.generation, j.seq, j.redeliveries)
   OR j.token = EXCLUDED.token
RETURNING job_id, generation, seq, attempt, state, worker
), reported AS (
    SELECT * FROM unnest($1::text[], $21::text[], $22::text[], $23::text[])
        AS r(job_id, error_type, error_message, traceback)
), recorded AS (
    INSERT INTO job_attempts (
        job_id, generation, attempt, outcome, error_type, error_message, traceback, worker
    )
    SELECT a.job_id, a.generation, a.attempt, a.state, r.error_type,
           COALESCE(r.error_message, ''), COALESCE(r.traceback, ''), a.worker
      FROM applied a JOIN reported r ON r.job_id = a.job_id
     WHERE a.state IN ('retrying', 'dead', 'suspended') AND r.error_type IS NOT NULL
    ON CONFLICT DO NOTHING
)
SELECT job_id, seq FROM applied;

-- name: insert_unique_job
-- A new job under a unique key, pending until a worker reports it. Nothing is inserted if
-- a job holds the key (jobs_unique_key_held) or if the job id is taken.
INSERT INTO jobs (
    job_id, generation, seq, redeliveries, job_type, queue, state, attempt, max_retries,
    payload, suspend_on_failure, created_at, unique_key, updated_at
)
VALUES ($1, 0, 0, 0, $2, $3, 'pending', 0, $4, $5, $6, $7, $8, now())
ON CONFLICT DO NOTHING
RETURNING job_id;

-- name: key_holder
-- The job that holds a unique key: the states of jobs_unique_key_held's predicate.
SELECT job_id, state FROM jobs
 WHERE unique_key = $1 AND state IN ('pending', 'running', 'retrying', 'suspended', 'dead');

-- name: save_checkpoint
UPDATE jobs SET checkpoint = $3, updated_at = now()
 WHERE job_id = $1 AND generation = $2 AND state = 'running';

-- name: get_job
SELECT * FROM jobs WHERE job_id = $1;

-- name: job_attempts
SELECT job_id, generation, attempt, outcome, error_type, error_message, traceback, worker, at
  FROM job_attempts WHERE job_id = $1 ORDER BY generation, attempt, at;

-- name: stop_job
-- A person suspends or cancels: a compare-and-set on the generation and states the
-- operation found when it began, with a seq no worker report can beat ($7, PERSON_SEQ).
UPDATE jobs
   SET state = $2, seq = $7, cause = $3, traceback = NULL, stopped_by = $4,
       token = NULL, updated_at = now()
 WHERE job_id = $1 AND state = ANY($5::text[]) AND generation = $6
RETURNING *;

-- name: resume_job
-- A compare-and-set on the suspended generation the resume found when it began.
UPDATE jobs
   SET state = 'pending', generation = generation + 1, seq = 0, redeliveries = 0, attempt = 0,
       max_retries = COALESCE($2, max_retries), payload = CASE WHEN $3 THEN $4 ELSE payload END,
       checkpoint = CASE WHEN $5 THEN checkpoint ELSE NULL END,
       cause = NULL, stopped_by = $6, token = NULL, updated_at = now()
 WHERE job_id = $1 AND state = 'suspended' AND generation = $7
RETURNING *;

-- name: requeue_jobs
-- A requeued dead letter's job row (if tracked) starts its next generation as pending.
UPDATE jobs j
   SET state = 'pending', generation = d.generation + 1, seq = 0, redeliveries = 0,
       attempt = 0, cause = NULL, token = NULL, updated_at = now()
  FROM dead_letters d
 WHERE d.id = ANY($1::bigint[]) AND j.job_id = d.job_id AND j.generation = d.generation;

-- name: stopped_among
SELECT job_id, generation FROM jobs
 WHERE job_id = ANY($1::text[]) AND state IN ('suspended', 'cancelled');

-- name: paused_queues
SELECT * FROM queue_pauses ORDER BY queue;

-- name: pause_queue
INSERT INTO queue_pauses (queue, paused_by, reason) VALUES ($1, $2, $3)
ON CONFLICT (queue) DO NOTHING
RETURNING *;

-- name: resume_queue
DELETE FROM queue_pauses WHERE queue = $1 RETURNING *;

-- name: paused_types
SELECT * FROM type_pauses ORDER BY job_type;

-- name: pause_type
INSERT INTO type_pauses (job_type, paused_by, reason) VALUES ($1, $2, $3)
ON CONFLICT (job_type) DO NOTHING
RETURNING *;

-- name: resume_type
DELETE FROM type_pauses WHERE job_type = $1 RETURNING *;

-- name: known_types
-- Every job type seen. The dashboard asks every few seconds, so the (job_type, ...)
-- indexes are skipped through, one probe per type, instead of read row by row.
WITH RECURSIVE j(t) AS (
    (SELECT job_type FROM jobs ORDER BY job_type LIMIT 1)
    UNION ALL
    SELECT (SELECT job_type FROM jobs WHERE job_type > j.t ORDER BY job_type LIMIT 1)
      FROM j WHERE j.t IS NOT NULL
), d(t) AS (
    (SELECT job_type FROM dead_letters WHERE job_type <> '' ORDER BY job_type LIMIT 1)
    UNION ALL
    SELECT (SELECT job_type FROM dead_letters WHERE job_type > d.t ORDER BY job_type LIMIT 1)
      FROM d WHERE d.t IS NOT NULL
)
SELECT t AS job_type FROM j WHERE t IS NOT NULL
UNION SELECT t FROM d WHERE t IS NOT NULL;

-- name: reanimation_candidates
-- Dead letters of one job type that an automatic rule may move back: dead long enough,
-- of a listed error type (none listed: any), moved back by the rule fewer than N times.
SELECT d.id FROM dead_letters d
 WHERE d.status = 'dead' AND d.job_type = $1
   AND (cardinality($2::text[]) = 0 OR d.error_type = ANY($2::text[]))
   AND d.died_at < $3
   AND (SELECT count(*) FROM dead_letters h
         WHERE h.job_id = d.job_id AND h.status_changed_by = $4
           AND h.status IN ('requeue_pending', 'requeued')) < $5
 ORDER BY d.id
 LIMIT $6;

-- name: activity_per_minute
-- Jobs per minute since $1 by their latest state (succeeded, retrying), and deaths.
SELECT date_trunc('minute', updated_at) AS minute, state AS series, count(*) AS n
  FROM jobs
 WHERE state IN ('succeeded', 'retrying') AND updated_at >= $1
 GROUP BY 1, 2
UNION ALL
SELECT date_trunc('minute', died_at), 'dead', count(*)
  FROM dead_letters
 WHERE died_at >= $1
 GROUP BY 1;

-- name: finished_last_minute
-- The rate of each queue: tracked jobs that succeeded or died in the last minute.
SELECT queue, count(*) AS n FROM jobs
 WHERE state IN ('succeeded', 'dead') AND updated_at >= now() - interval '1 minute'
 GROUP BY queue;

-- name: end_session
INSERT INTO admin_sessions_ended (sid, expires) VALUES ($1, $2) ON CONFLICT DO NOTHING;

-- name: session_ended
SELECT EXISTS (SELECT 1 FROM admin_sessions_ended WHERE sid = $1);

-- name: forget_ended_sessions
DELETE FROM admin_sessions_ended WHERE expires < now();

-- name: prune_lock
SELECT pg_try_advisory_lock($1);

-- name: prune_unlock
SELECT pg_advisory_unlock($1);

-- name: count_finished_jobs
SELECT count(*) FROM jobs WHERE state IN ('succeeded', 'cancelled', 'dead') AND updated_at < $1;

-- name: prune_finished_jobs
-- In batches, so no lock is held long; the (state, updated_at) index finds them.
DELETE FROM jobs WHERE job_id IN (
    SELECT job_id FROM jobs
     WHERE state IN ('succeeded', 'cancelled', 'dead') AND updated_at < $1 LIMIT $2);

-- name: count_attempts
-- Attempts older than the age whose job row is gone or goes in this pass (finished as long).
SELECT count(*) FROM job_attempts a
 WHERE a.at < $1 AND NOT EXISTS (
       SELECT 1 FROM jobs j WHERE j.job_id = a.job_id
          AND NOT (j.state IN ('succeeded', 'cancelled', 'dead') AND j.updated_at < $1));

-- name: prune_attempts
DELETE FROM job_attempts WHERE (job_id, generation, attempt, outcome) IN (
    SELECT a.job_id, a.generation, a.attempt, a.outcome FROM job_attempts a
     WHERE a.at < $1 AND NOT EXISTS (
           SELECT 1 FROM jobs j WHERE j.job_id = a.job_id
              AND NOT (j.state IN ('succeeded', 'cancelled', 'dead') AND j.updated_at < $1))
     LIMIT $2);

-- name: count_finished_workflows
SELECT count(*) FROM workflows WHERE state IN ('succeeded', 'cancelled') AND finished_at < $1;

-- name: prune_finished_workflows
-- Their steps and edges go with them (ON DELETE CASCADE); failed and suspended ones wait
-- for a person, as dead letters do.
DELETE FROM workflows WHERE workflow_id IN (
    SELECT workflow_id FROM workflows
     WHERE state IN ('succeeded', 'cancelled') AND finished_at < $1 LIMIT $2);

-- name: count_audit
SELECT count(*) FROM audit_log WHERE at < $1 AND state <> 'running';

-- name: prune_audit
DELETE FROM audit_log WHERE id IN (
    SELECT id FROM audit_log WHERE at < $1 AND state <> 'running' LIMIT $2);

-- name: count_dead_history
SELECT count(*) FROM dead_letters
 WHERE status IN ('requeued', 'deleted') AND coalesce(status_changed_at, died_at) < $1;

-- name: prune_dead_history
-- Rows a person already acted on (requeued, deleted); rows still dead wait for a person.
DELETE FROM dead_letters WHERE id IN (
    SELECT id FROM dead_letters
     WHERE status IN ('requeued', 'deleted') AND coalesce(status_changed_at, died_at) < $1
     LIMIT $2);

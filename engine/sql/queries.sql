-- Named queries; store.py loads them by name. Unqualified tables resolve through
-- the connection's search_path, which is the namespace schema.

-- name: insert_dead_letters
-- One round trip for a whole batch; a second copy of a death is ignored.
INSERT INTO dead_letters (
    job_id, generation, job_type, queue, payload, body, headers, attempts, max_retries,
    reason, error_type, error_message, traceback, checkpoint, enqueued_at, died_at, worker
)
SELECT * FROM unnest(
    $1::text[], $2::integer[], $3::text[], $4::text[], $5::jsonb[], $6::bytea[], $7::jsonb[],
    $8::integer[], $9::integer[], $10::text[], $11::text[], $12::text[], $13::text[],
    $14::jsonb[], $15::timestamptz[], $16::timestamptz[], $17::text[]
)
ON CONFLICT (job_id, generation) DO NOTHING;

-- name: generation_is_dead
SELECT EXISTS (SELECT 1 FROM dead_letters WHERE job_id = $1 AND generation = $2);

-- name: history
SELECT * FROM dead_letters WHERE job_id = $1 ORDER BY generation;

-- name: mark_requeue_pending
-- The compare-and-set that makes concurrent requeues of one job give one winner.
UPDATE dead_letters
   SET status = 'requeue_pending', status_changed_at = now(), status_changed_by = $2
 WHERE id = ANY($1::bigint[]) AND status = 'dead' AND job_type <> ''
RETURNING id, job_id, generation, job_type, queue, payload, max_retries, checkpoint, enqueued_at;

-- name: insert_outbox
INSERT INTO requeue_outbox (dead_letter_id, job_id, queue, body)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[]);

-- name: claim_outbox
SELECT id, dead_letter_id, job_id, queue, body
  FROM requeue_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED;

-- name: finish_outbox
WITH sent AS (DELETE FROM requeue_outbox WHERE id = ANY($1::bigint[]) RETURNING dead_letter_id)
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
INSERT INTO audit_log (actor, action, selector, count) VALUES ($1, $2, $3, $4);

-- name: audit_recent
SELECT * FROM audit_log ORDER BY id DESC LIMIT $1;

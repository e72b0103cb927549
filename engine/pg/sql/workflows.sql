-- name: insert_workflow
-- A new workflow, unless its id is taken or a workflow holds its unique name
-- (workflows_unique_name_held): then nothing is inserted.
INSERT INTO workflows (workflow_id, workflow_type, unique_name, state, input, queue, steps_left)
VALUES ($1, $2, $3, 'pending', $4, $5, $6)
ON CONFLICT DO NOTHING
RETURNING workflow_id;

-- name: insert_workflow_steps
INSERT INTO workflow_steps (
    workflow_id, step, kind, job_type, queue, items_from, generation, state, remaining
)
SELECT $1, s.step, s.kind, s.job_type, s.queue, s.items_from, 0, 'waiting', s.remaining
  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[])
       AS s(step, kind, job_type, queue, items_from, remaining);

-- name: insert_workflow_edges
INSERT INTO workflow_edges (workflow_id, depends_on, step)
SELECT $1, e.depends_on, e.step FROM unnest($2::text[], $3::text[]) AS e(depends_on, step);

-- name: workflow_exists
SELECT 1 FROM workflows WHERE workflow_id = $1;

-- name: lock_workflow
SELECT workflow_id, workflow_type, generation, state, input, queue, steps_left
  FROM workflows WHERE workflow_id = $1 FOR NO KEY UPDATE;

-- name: finish_step
-- The compare-and-set of a step's success: only the job of this generation, once.
UPDATE workflow_steps SET state = 'succeeded', result = $4, updated_at = now()
 WHERE workflow_id = $1 AND step = $2 AND job_id = $3 AND state <> 'succeeded'
RETURNING step, kind, parent;

-- name: finish_fan_out
UPDATE workflow_steps SET state = 'succeeded', updated_at = now()
 WHERE workflow_id = $1 AND step = $2;

-- name: fail_step
WITH failed AS (
    UPDATE workflow_steps SET state = 'dead', updated_at = now()
     WHERE workflow_id = $1 AND step = $2
)
UPDATE workflows SET state = 'failed', cause = $3, updated_at = now()
 WHERE workflow_id = $1 AND state IN ('pending', 'running', 'failed');

-- name: count_down
UPDATE workflow_steps SET remaining = remaining - 1, updated_at = now()
 WHERE workflow_id = $1 AND step = ANY($2::text[])
RETURNING step, kind, job_type, queue, items_from, remaining, state;

-- name: dependents
SELECT step FROM workflow_edges WHERE workflow_id = $1 AND depends_on = $2;

-- name: ready_steps
SELECT step, kind, job_type, queue, items_from, remaining, state
  FROM workflow_steps
 WHERE workflow_id = $1 AND parent IS NULL AND state = 'waiting' AND remaining = 0
 ORDER BY step;

-- name: step_result
SELECT state = 'succeeded' AS done, result FROM workflow_steps
 WHERE workflow_id = $1 AND step = $2;

-- name: item_results
SELECT item, result FROM workflow_steps
 WHERE workflow_id = $1 AND parent = $2 AND item > $3 AND state = 'succeeded'
 ORDER BY item LIMIT $4;

-- name: add_items
-- A fan-out's work items; the fan-out now waits on them, running.
WITH items AS (
    INSERT INTO workflow_steps (
        workflow_id, step, kind, parent, item, job_type, queue, generation, state, remaining,
        payload
    )
    SELECT $1, $2 || '[' || (i.ord - 1) || ']', 'item', $2, i.ord - 1, $3, $4, $5, 'waiting', 0,
           i.payload
      FROM unnest($6::jsonb[]) WITH ORDINALITY AS i(payload, ord)
)
UPDATE workflow_steps SET state = 'running', remaining = cardinality($6::jsonb[]),
       generation = $5, updated_at = now()
 WHERE workflow_id = $1 AND step = $2;

-- name: launch_steps
-- Released steps become pending with their job; the jobs are inserted pending, naming
-- the workflow (the outbox rows are written by the caller in the same transaction).
WITH launched AS (
    UPDATE workflow_steps s SET state = 'pending', job_id = l.job_id, updated_at = now()
      FROM unnest($2::text[], $3::text[]) AS l(step, job_id)
     WHERE s.workflow_id = $1 AND s.step = l.step
)
INSERT INTO jobs (
    job_id, generation, seq, redeliveries, job_type, queue, state, attempt, payload,
    created_at, workflow_id, updated_at
)
SELECT l.job_id, 0, 0, 0, l.job_type, l.queue, 'pending', 0, l.payload, now(), $1, now()
  FROM unnest($3::text[], $4::text[], $5::text[], $6::jsonb[])
       AS l(job_id, job_type, queue, payload)
ON CONFLICT (job_id) DO NOTHING;

-- name: top_level_done
UPDATE workflows SET steps_left = steps_left - 1, updated_at = now()
 WHERE workflow_id = $1
RETURNING steps_left;

-- name: set_workflow_state
UPDATE workflows
   SET state = $2, cause = $3, stopped_by = $4, updated_at = now(),
       finished_at = CASE WHEN $2 IN ('succeeded', 'cancelled') THEN now() END
 WHERE workflow_id = $1;

-- name: unique_holder
SELECT workflow_id, state FROM workflows
 WHERE unique_name = $1 AND state IN ('pending', 'running', 'failed', 'suspended');

-- name: get_workflow
SELECT * FROM workflows WHERE workflow_id = $1;

-- name: workflow_steps
-- A workflow's steps and items in name order, a page after $2; only top-level ones if $4,
-- only those in the states $5 if given.
SELECT workflow_id, step, kind, parent, item, job_type, queue, items_from, generation, state,
       remaining, job_id, result, updated_at
  FROM workflow_steps
 WHERE workflow_id = $1 AND step > $2 AND (NOT $4 OR parent IS NULL)
   AND ($5::text[] IS NULL OR state = ANY($5::text[]))
 ORDER BY step LIMIT $3;

-- name: workflow_progress
-- Steps and items per state (fan-outs themselves are not counted: their items are).
SELECT state, count(*) AS n FROM workflow_steps
 WHERE workflow_id = $1 AND kind <> 'fan_out' GROUP BY state;

-- name: workflow_all_edges
SELECT depends_on, step FROM workflow_edges WHERE workflow_id = $1;

-- name: step_jobs
-- The jobs of a workflow's steps and items in one of the states $2.
SELECT s.step, s.job_id, j.generation, j.state, j.cause, j.error_type, j.error_message
  FROM workflow_steps s JOIN jobs j ON j.job_id = s.job_id
 WHERE s.workflow_id = $1 AND s.state = ANY($2::text[]);

-- name: reset_steps
-- Steps back to waiting in generation $3, their fan-outs' items gone.
WITH gone AS (
    DELETE FROM workflow_steps WHERE workflow_id = $1 AND parent = ANY($2::text[])
)
UPDATE workflow_steps
   SET state = 'waiting', job_id = NULL, result = NULL, generation = $3, remaining = 0,
       updated_at = now()
 WHERE workflow_id = $1 AND step = ANY($2::text[]);

-- name: recount_steps
-- What each of the steps $2 waits on, and the top-level steps left, counted anew.
WITH counted AS (
    UPDATE workflow_steps s SET remaining = (
        SELECT count(*) FROM workflow_edges e
          JOIN workflow_steps d ON d.workflow_id = e.workflow_id AND d.step = e.depends_on
         WHERE e.workflow_id = s.workflow_id AND e.step = s.step AND d.state <> 'succeeded')
     WHERE s.workflow_id = $1 AND s.step = ANY($2::text[])
)
UPDATE workflows SET generation = $3, updated_at = now(), steps_left = (
    SELECT count(*) FROM workflow_steps
     WHERE workflow_id = $1 AND parent IS NULL AND state <> 'succeeded')
 WHERE workflow_id = $1;

-- name: top_steps
SELECT step, kind, job_type, queue, items_from, state, remaining, job_id
  FROM workflow_steps WHERE workflow_id = $1 AND parent IS NULL ORDER BY step;

-- name: list_workflows
-- Newest first, a page before ($4, $5) = (created_at, workflow_id) of the last row seen.
SELECT workflow_id, workflow_type, unique_name, generation, state, cause, stopped_by,
       created_at, updated_at, finished_at
  FROM workflows
 WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR workflow_type = $2)
   AND ($4::timestamptz IS NULL OR (created_at, workflow_id) < ($4, $5))
 ORDER BY created_at DESC, workflow_id DESC LIMIT $3;

-- name: progress_of
SELECT workflow_id, state, count(*) AS n FROM workflow_steps
 WHERE workflow_id = ANY($1::text[]) AND kind <> 'fan_out' GROUP BY workflow_id, state;

-- name: fan_out_progress
-- Each fan-out's items per state.
SELECT parent, state, count(*) AS n FROM workflow_steps
 WHERE workflow_id = $1 AND parent IS NOT NULL GROUP BY parent, state;

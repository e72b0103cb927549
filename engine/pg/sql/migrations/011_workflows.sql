-- Workflows: a graph of steps, kept here so that readiness is decided by the database.
-- Every change to one workflow (a step's success, a release of ready steps, a suspend,
-- cancel or restart) locks its workflows row first: the changes of one workflow are
-- serialized, so two steps finishing at once can neither both miss nor both fire the
-- step that waits on them.
CREATE TABLE workflows (
    workflow_id   text        PRIMARY KEY,
    workflow_type text        NOT NULL,
    unique_name   text,
    generation    integer     NOT NULL DEFAULT 0,
    state         text        NOT NULL CHECK (state IN
                  ('pending', 'running', 'succeeded', 'failed', 'suspended', 'cancelled')),
    input         jsonb,
    queue         text        NOT NULL,
    -- Top-level steps (fan-outs counted once, not their items) not yet succeeded in this
    -- generation: the step whose success takes it to 0 ends the workflow.
    steps_left    integer     NOT NULL,
    cause         text,       -- why it is failed, suspended or cancelled
    stopped_by    text,       -- who suspended or cancelled it
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
-- A unique name is held while the workflow is not over for good.
CREATE UNIQUE INDEX workflows_unique_name_held ON workflows (unique_name)
 WHERE unique_name IS NOT NULL AND state IN ('pending', 'running', 'failed', 'suspended');
CREATE INDEX workflows_state_updated ON workflows (state, updated_at DESC);
CREATE INDEX workflows_type_updated ON workflows (workflow_type, updated_at DESC);

-- One row per step, per fan-out and per work item of a fan-out. A step's row mirrors the
-- state of the job that runs it (job_id, one per workflow generation) but for success,
-- which only the step's completion writes, with its result, in the transaction that
-- releases the steps waiting on it.
CREATE TABLE workflow_steps (
    workflow_id text        NOT NULL REFERENCES workflows ON DELETE CASCADE,
    step        text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('step', 'fan_out', 'item')),
    parent      text,       -- an item's fan-out
    item        integer,    -- an item's index in its fan-out, from 0
    job_type    text,       -- the job type that runs a step or an item
    queue       text,       -- the queue its jobs go to
    items_from  text,       -- a fan-out's source: a step's result, or '$input'
    generation  integer     NOT NULL,
    state       text        NOT NULL CHECK (state IN
                ('waiting', 'pending', 'running', 'retrying', 'succeeded', 'dead', 'suspended',
                 'cancelled')),
    -- Dependencies not yet succeeded (a fan-out once expanded: its items not yet
    -- succeeded). A step is ready when it reaches 0 while waiting.
    remaining   integer     NOT NULL,
    job_id      text,
    payload     jsonb,      -- an item's value
    result      jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, step)
);
CREATE UNIQUE INDEX workflow_steps_job ON workflow_steps (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX workflow_steps_items ON workflow_steps (workflow_id, parent, item)
 WHERE parent IS NOT NULL;
CREATE INDEX workflow_steps_state ON workflow_steps (workflow_id, state);

-- step waits on depends_on (between top-level steps; items belong to their fan-out).
CREATE TABLE workflow_edges (
    workflow_id text NOT NULL REFERENCES workflows ON DELETE CASCADE,
    depends_on  text NOT NULL,
    step        text NOT NULL,
    PRIMARY KEY (workflow_id, depends_on, step)
);

-- The job of a step names its workflow: what the trigger below follows. So does its
-- dead letter: a workflow's failed items are found, and moved back, by it.
ALTER TABLE jobs ADD COLUMN workflow_id text;
ALTER TABLE dead_letters ADD COLUMN workflow_id text;
CREATE INDEX dead_letters_workflow ON dead_letters (workflow_id, status)
 WHERE workflow_id IS NOT NULL;

-- A step follows its job: running, retrying, dead, suspended, cancelled, and back to
-- pending or running when the job is moved back, whoever changed the job (a worker's
-- report, a person's suspend or cancel, a requeue). Success is the completion's alone.
-- A step that needs a person (dead, suspended, cancelled) makes its workflow FAILED;
-- once none does, it is RUNNING again. A person's SUSPENDED or CANCELLED stands.
CREATE FUNCTION workflow_step_follows_job() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    wf   text;
    name text;
    was  text;
BEGIN
    SELECT s.workflow_id, s.step, s.state INTO wf, name, was
      FROM workflow_steps s WHERE s.job_id = NEW.job_id FOR UPDATE;
    IF wf IS NULL OR was IN ('succeeded', 'waiting') OR was = NEW.state THEN
        RETURN NULL;
    END IF;
    UPDATE workflow_steps SET state = NEW.state, updated_at = now()
     WHERE workflow_id = wf AND step = name;
    IF NEW.state IN ('dead', 'suspended', 'cancelled') THEN
        UPDATE workflows
           SET state = 'failed', updated_at = now(),
               cause = left(format('step %s %s: %s', name, NEW.state,
                                   COALESCE(NEW.cause, NEW.error_type || ': ' || NEW.error_message,
                                            NEW.error_type, 'no error recorded')), 2000)
         WHERE workflow_id = wf AND state IN ('pending', 'running', 'failed');
    ELSIF was IN ('dead', 'suspended', 'cancelled') THEN
        UPDATE workflows w SET state = 'running', cause = NULL, updated_at = now()
         WHERE w.workflow_id = wf AND w.state = 'failed'
           AND NOT EXISTS (SELECT 1 FROM workflow_steps s WHERE s.workflow_id = wf
                              AND s.state IN ('dead', 'suspended', 'cancelled'));
    ELSIF NEW.state = 'running' THEN
        UPDATE workflows SET state = 'running', updated_at = now()
         WHERE workflow_id = wf AND state = 'pending';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_workflow_step AFTER UPDATE OF state ON jobs
   FOR EACH ROW WHEN (NEW.workflow_id IS NOT NULL AND NEW.state <> 'succeeded'
                      AND OLD.state IS DISTINCT FROM NEW.state)
   EXECUTE FUNCTION workflow_step_follows_job();

-- A step's dead letter makes it dead even when no job state says so (a job of a type no
-- worker knows, or one the broker dead-lettered by itself): its workflow fails and waits.
CREATE FUNCTION workflow_step_died() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    wf   text;
    name text;
BEGIN
    UPDATE workflow_steps SET state = 'dead', updated_at = now()
     WHERE job_id = NEW.job_id AND state NOT IN ('succeeded', 'cancelled', 'dead')
    RETURNING workflow_id, step INTO wf, name;
    IF wf IS NOT NULL THEN
        UPDATE workflows
           SET state = 'failed', updated_at = now(),
               cause = left(format('step %s dead: %s: %s', name, NEW.error_type,
                                   NEW.error_message), 2000)
         WHERE workflow_id = wf AND state IN ('pending', 'running', 'failed');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER dead_letters_workflow_step AFTER INSERT ON dead_letters
   FOR EACH ROW WHEN (NEW.workflow_id IS NOT NULL)
   EXECUTE FUNCTION workflow_step_died();

-- Enqueue-if-absent: a job inserted under a unique key holds it while it is not over for
-- good (pending, running, retrying, suspended, or dead: a dead job may be requeued); a
-- second job under the key is refused until the holder succeeds or is cancelled. Worker
-- reports never write the column, so a job keeps its key through its generations.
ALTER TABLE jobs ADD COLUMN unique_key text;
CREATE UNIQUE INDEX jobs_unique_key_held ON jobs (unique_key)
 WHERE unique_key IS NOT NULL
   AND state IN ('pending', 'running', 'retrying', 'suspended', 'dead');

-- The requeue outbox becomes the outbox of every staged publish: requeues, resumes,
-- enqueues under a unique key (and later workflow steps). Rows already waiting stay; a
-- row without a dead letter was staged by a resume.
ALTER TABLE requeue_outbox RENAME TO outbox;
ALTER SEQUENCE requeue_outbox_id_seq RENAME TO outbox_id_seq;
ALTER INDEX requeue_outbox_pkey RENAME TO outbox_pkey;
ALTER TABLE outbox RENAME CONSTRAINT requeue_outbox_dead_letter_id_fkey
    TO outbox_dead_letter_id_fkey;
ALTER TABLE outbox
    ADD COLUMN kind text NOT NULL DEFAULT 'requeue'
        CHECK (kind IN ('requeue', 'resume', 'enqueue', 'step')),
    -- A publish that must not run before this time goes through a delay queue.
    ADD COLUMN run_at timestamptz;
UPDATE outbox SET kind = 'resume' WHERE dead_letter_id IS NULL;
-- Every new row says what it is.
ALTER TABLE outbox ALTER COLUMN kind DROP DEFAULT;

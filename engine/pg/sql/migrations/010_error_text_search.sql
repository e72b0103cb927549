-- "Message contains" (the dead-letter filter on the error text) is ILIKE '%text%', which
-- no b-tree serves: without help it reads every dead letter. A trigram index (pg_trgm)
-- serves it. pg_trgm is a trusted extension (PostgreSQL 13+), so a role that may create
-- objects in the database may create it; where it may not, or the extension is not
-- installed, the filter keeps working, by reading every row, and the migration says so.
-- The extension is database-wide: it goes to public (or stays where it already is), never
-- into a namespace's schema, which dropping the namespace would take with it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE EXTENSION pg_trgm SCHEMA public;
    END IF;
EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported
               OR unique_violation OR duplicate_object THEN
    RAISE NOTICE 'pg_trgm is not available (%): the dead-letter message filter reads every row',
        SQLERRM;
END $$;

DO $$
DECLARE
    trgm_schema text;
BEGIN
    SELECT n.nspname INTO trgm_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format(
            'CREATE INDEX dead_letters_error_message_trgm ON dead_letters '
            'USING gin (error_message %I.gin_trgm_ops)', trgm_schema);
    END IF;
END $$;

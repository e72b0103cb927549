-- The dead-letter filter on payload content ({"customer": 42}) is jsonb containment,
-- payload @> $1, which no b-tree serves: without help it reads every dead letter. A GIN
-- index serves it; jsonb_path_ops rather than the default jsonb_ops because it is smaller
-- and faster for @>, the only operator the filter uses (it cannot serve ? and ?|, which
-- nothing here asks). A filter with no value in it ({} or {"a": {}}) still reads the
-- whole index.
CREATE INDEX dead_letters_payload_path ON dead_letters USING gin (payload jsonb_path_ops);

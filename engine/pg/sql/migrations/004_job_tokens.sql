-- The token of the worker report a row holds: a report whose reply was lost (the
-- connection died after the commit) and that is sent again recognises its own write
-- instead of being refused as a duplicate. Any other change of the row clears it.
ALTER TABLE jobs ADD COLUMN token text;

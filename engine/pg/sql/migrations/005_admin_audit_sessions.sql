-- A bulk operation writes its audit entry when it starts ('running') and its count as it
-- goes, so an interrupted run still leaves a record of how far it got.
ALTER TABLE audit_log
    ADD COLUMN state       text        NOT NULL DEFAULT 'done',
    ADD COLUMN finished_at timestamptz;
UPDATE audit_log SET finished_at = at;

-- Dashboard sessions ended by a logout before their expiry: a copied cookie stays refused.
CREATE TABLE admin_sessions_ended (
    sid     text        PRIMARY KEY,
    expires timestamptz NOT NULL
);

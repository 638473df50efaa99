-- Key material every node of one database shares (PostgreSQL; on SQLite the keys stay
-- files in the data directory and these tables stay empty): the token signing key and
-- installation id, the audit checkpoint key. The first node to start inserts its
-- candidate; every node reads the one stored. Never updated or deleted.
CREATE TABLE server_key (
    name    TEXT PRIMARY KEY,
    body    TEXT NOT NULL,
    created INTEGER NOT NULL -- unix milliseconds
);
CREATE TRIGGER server_key_no_delete BEFORE DELETE ON server_key
BEGIN SELECT RAISE(ABORT, 'server keys are never replaced'); END;
CREATE TRIGGER server_key_no_update BEFORE UPDATE ON server_key
BEGIN SELECT RAISE(ABORT, 'server keys are never replaced'); END;

-- Signed audit checkpoints (the lines of DATA_DIR/audit/checkpoints.jsonl) of every
-- node, so that any node verifies the checkpoints another signed. Append-only.
CREATE TABLE audit_checkpoint (
    id   INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;

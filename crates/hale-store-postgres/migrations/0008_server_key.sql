-- Key material every node of the database shares: the token signing key and
-- installation id, the audit checkpoint key. The first node to start inserts its
-- candidate (INSERT ... ON CONFLICT DO NOTHING); every node reads the one stored, so
-- two nodes starting at once agree. Never updated or deleted.
CREATE TABLE server_key (
    name    TEXT PRIMARY KEY,
    body    TEXT NOT NULL,
    created BIGINT NOT NULL -- unix milliseconds
);
CREATE FUNCTION server_key_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'server keys are never replaced';
END $$;
CREATE TRIGGER server_key_no_change BEFORE UPDATE OR DELETE ON server_key
    FOR EACH ROW EXECUTE FUNCTION server_key_immutable();
CREATE TRIGGER server_key_no_truncate BEFORE TRUNCATE ON server_key
    FOR EACH STATEMENT EXECUTE FUNCTION server_key_immutable();

-- Signed audit checkpoints of every node (the lines each also appends to its
-- DATA_DIR/audit/checkpoints.jsonl), so that any node verifies the checkpoints another
-- signed. Append-only.
CREATE TABLE audit_checkpoint (
    id   BIGSERIAL PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

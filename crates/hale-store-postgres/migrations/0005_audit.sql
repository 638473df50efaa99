-- The audit trail: AuditEvents as JSON, append-only. Writers on any node insert
-- unchained entries (no lock, no serialization between them); the chainer, one at a
-- time under an advisory lock, links them into the hash chain in the order it finds
-- them committed, setting chain_pos and chain_hash once.
CREATE TABLE audit_log (
    seq        BIGSERIAL PRIMARY KEY,
    recorded   BIGINT NOT NULL, -- unix milliseconds
    action     TEXT   NOT NULL,
    agent      TEXT   NOT NULL,
    outcome    TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    chain_pos  BIGINT UNIQUE,
    chain_hash BYTEA
);
CREATE INDEX audit_log_unchained ON audit_log (seq) WHERE chain_pos IS NULL;
CREATE INDEX audit_log_by_agent ON audit_log (agent, seq);
CREATE INDEX audit_log_by_recorded ON audit_log (recorded);

CREATE TABLE audit_patient (
    patient TEXT   NOT NULL,
    seq     BIGINT NOT NULL,
    PRIMARY KEY (patient, seq)
);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_log' AND OLD.chain_pos IS NULL
       AND NEW.seq = OLD.seq AND NEW.recorded = OLD.recorded AND NEW.action = OLD.action
       AND NEW.agent = OLD.agent AND NEW.outcome = OLD.outcome AND NEW.body = OLD.body THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_patient_append_only BEFORE UPDATE OR DELETE ON audit_patient
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_patient_no_truncate BEFORE TRUNCATE ON audit_patient
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- The audit trail: AuditEvents as JSON, append-only. chain_pos and chain_hash are set
-- once, by the chainer, in the order it links entries into the hash chain.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded   INTEGER NOT NULL, -- unix milliseconds
    action     TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    chain_pos  INTEGER UNIQUE,
    chain_hash BLOB
);
CREATE INDEX audit_log_unchained ON audit_log (seq) WHERE chain_pos IS NULL;
CREATE INDEX audit_log_by_agent ON audit_log (agent, seq);
CREATE INDEX audit_log_by_recorded ON audit_log (recorded);

-- The patients each entry concerns.
CREATE TABLE audit_patient (
    patient TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (patient, seq)
) WITHOUT ROWID;

-- Nothing changes or removes an entry once written, except the chainer linking it.
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
WHEN OLD.chain_pos IS NOT NULL OR NEW.seq IS NOT OLD.seq OR NEW.recorded IS NOT OLD.recorded
  OR NEW.action IS NOT OLD.action OR NEW.agent IS NOT OLD.agent OR NEW.outcome IS NOT OLD.outcome
  OR NEW.body IS NOT OLD.body
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_patient_no_delete BEFORE DELETE ON audit_patient
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_patient_no_update BEFORE UPDATE ON audit_patient
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;

-- The read-audit journal files already moved into audit_log (see journal.rs): a file
-- found again after a stop between the move's commit and the file's removal is only
-- removed, never inserted twice.
CREATE TABLE audit_journal_done (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

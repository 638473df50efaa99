-- The entries of reads and refusals, moved from the journal (see journal.rs) in
-- segments of up to 64 consecutive entries, one row each, rather than one row and five
-- index entries per entry. Entry i of a segment has chain position first_pos + i and
-- sequence number first_seq + i (numbers taken from audit_log's sequence, so the two
-- tables never share one). `lines` holds the entries as the journal wrote them (a line
-- each, see journal.rs); `hashes` their chain hashes, 32 bytes each, in order.
CREATE TABLE audit_segment (
    first_pos    INTEGER PRIMARY KEY,
    first_seq    INTEGER NOT NULL,
    entries      INTEGER NOT NULL,
    recorded_min INTEGER NOT NULL, -- unix milliseconds
    recorded_max INTEGER NOT NULL,
    lines        BLOB    NOT NULL,
    hashes       BLOB    NOT NULL
);

-- What the segments are searched by: 'p|' and a patient id, 'g|' and an agent key. One
-- row per key per run of the chainer (which moves a second's entries at a time), not
-- per entry: `first_pos` is the run's first segment, `segments` the first positions of
-- the run's segments holding an entry with the key (8 bytes each, big-endian, ascending).
CREATE TABLE audit_segment_key (
    key       TEXT    NOT NULL,
    first_pos INTEGER NOT NULL,
    segments  BLOB    NOT NULL,
    PRIMARY KEY (key, first_pos)
) WITHOUT ROWID;

CREATE TRIGGER audit_segment_no_delete BEFORE DELETE ON audit_segment
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_segment_no_update BEFORE UPDATE ON audit_segment
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_segment_key_no_delete BEFORE DELETE ON audit_segment_key
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_segment_key_no_update BEFORE UPDATE ON audit_segment_key
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;

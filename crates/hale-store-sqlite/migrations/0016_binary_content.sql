-- The content of a Binary kept apart from its JSON (which then has no `data`), in
-- parts of up to 512 KiB, each at its byte offset: written a part at a time as a
-- request streams in, and read a part at a time (a range request reads only its parts).
CREATE TABLE binary_content (
    res_id  TEXT    NOT NULL,
    version INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    bytes   BLOB    NOT NULL,
    PRIMARY KEY (res_id, version, at)
);

-- The content of a Binary kept apart from its JSON (which then has no `data`), in
-- parts of up to 512 KiB, each at its byte offset: written a part at a time as a
-- request streams in, and read a part at a time (a range request reads only its parts).
-- Its bytes are not compressed: they are mostly images and PDFs, compressed already.
CREATE TABLE binary_content (
    res_id  TEXT   NOT NULL,
    version BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    bytes   BYTEA  NOT NULL,
    PRIMARY KEY (res_id, version, at)
);
ALTER TABLE binary_content ALTER COLUMN bytes SET STORAGE EXTERNAL;

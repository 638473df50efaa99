-- The authorization server's records: registered clients, authorization codes,
-- refresh tokens, sign-in sessions. Keys of secrets are hashes of the secret.
CREATE TABLE auth_record (
    kind    TEXT NOT NULL,
    key     TEXT NOT NULL,
    body    TEXT NOT NULL,
    expires BIGINT,
    PRIMARY KEY (kind, key)
);
CREATE INDEX auth_record_expires ON auth_record (kind, expires) WHERE expires IS NOT NULL;

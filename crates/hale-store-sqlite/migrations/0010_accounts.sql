-- User accounts: the folded user name is unique; the body is the account's JSON
-- (its password as an Argon2id hash, never in plain text).
CREATE TABLE account (
    id       TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    body     TEXT NOT NULL
);

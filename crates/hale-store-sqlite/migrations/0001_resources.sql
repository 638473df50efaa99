-- Every version of every resource; a deletion is a version with a NULL body.
CREATE TABLE resource_versions (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL, -- unix milliseconds
    method       TEXT    NOT NULL, -- POST, PUT or DELETE
    body         TEXT,
    UNIQUE (res_type, res_id, version)
);
CREATE INDEX resource_versions_by_type ON resource_versions (res_type, seq);

-- The newest version of each resource.
CREATE TABLE resources (
    res_type TEXT    NOT NULL,
    res_id   TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    deleted  INTEGER NOT NULL,
    PRIMARY KEY (res_type, res_id)
) WITHOUT ROWID;

-- Token index of current, non-deleted resources.
CREATE TABLE search_token (
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    system   TEXT,
    code     TEXT NOT NULL
);
CREATE INDEX search_token_lookup ON search_token (res_type, param, code, system);
CREATE INDEX search_token_owner ON search_token (res_type, res_id);

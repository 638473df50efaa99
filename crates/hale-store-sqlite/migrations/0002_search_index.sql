-- Search index tables, one per kind of value; rows belong to the current, non-deleted
-- version of a resource and are rewritten with every write.
ALTER TABLE search_token ADD COLUMN text TEXT;
CREATE INDEX search_token_param_system ON search_token (res_type, param, system, code);

CREATE TABLE search_string (
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    norm     TEXT NOT NULL,
    exact    TEXT NOT NULL
);
CREATE INDEX search_string_lookup ON search_string (res_type, param, norm);
CREATE INDEX search_string_owner ON search_string (res_type, res_id);

CREATE TABLE search_date (
    res_type TEXT    NOT NULL,
    res_id   TEXT    NOT NULL,
    param    TEXT    NOT NULL,
    lo       INTEGER NOT NULL,
    hi       INTEGER NOT NULL
);
CREATE INDEX search_date_lookup ON search_date (res_type, param, lo);
CREATE INDEX search_date_owner ON search_date (res_type, res_id);

CREATE TABLE search_number (
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    value    REAL NOT NULL
);
CREATE INDEX search_number_lookup ON search_number (res_type, param, value);
CREATE INDEX search_number_owner ON search_number (res_type, res_id);

CREATE TABLE search_quantity (
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    value    REAL NOT NULL,
    system   TEXT,
    code     TEXT,
    unit     TEXT
);
CREATE INDEX search_quantity_lookup ON search_quantity (res_type, param, value);
CREATE INDEX search_quantity_owner ON search_quantity (res_type, res_id);

CREATE TABLE search_reference (
    res_type    TEXT NOT NULL,
    res_id      TEXT NOT NULL,
    param       TEXT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    url         TEXT
);
CREATE INDEX search_reference_lookup ON search_reference (res_type, param, target_id, target_type);
CREATE INDEX search_reference_url ON search_reference (res_type, param, url);
CREATE INDEX search_reference_owner ON search_reference (res_type, res_id);
CREATE INDEX search_reference_target ON search_reference (target_type, target_id);

CREATE TABLE search_uri (
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    uri      TEXT NOT NULL
);
CREATE INDEX search_uri_lookup ON search_uri (res_type, param, uri);
CREATE INDEX search_uri_owner ON search_uri (res_type, res_id);

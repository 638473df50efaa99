-- Hale on PostgreSQL: the same layout as the SQLite store (see ARCHITECTURE.md), in
-- one migration. Text that is compared or sorted uses the "C" collation, so ids and
-- index values order by code point exactly as SQLite orders them, whatever the
-- database's default collation is.

-- Every version of every resource; a deletion is a version with a NULL body.
-- The body is TEXT, not JSONB: JSONB would rewrite numbers (1.50 -> 1.5).
CREATE TABLE resource_versions (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    res_type     TEXT COLLATE "C" NOT NULL,
    res_id       TEXT COLLATE "C" NOT NULL,
    version      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL, -- unix milliseconds
    method       TEXT   NOT NULL, -- POST, PUT or DELETE
    body         TEXT,
    -- two nodes can never write the same version of a resource
    UNIQUE (res_type, res_id, version)
);
CREATE INDEX resource_versions_by_type ON resource_versions (res_type, seq);

-- The newest version of each resource; its row is locked (SELECT ... FOR UPDATE) by
-- every write of the resource.
CREATE TABLE resources (
    res_type TEXT COLLATE "C" NOT NULL,
    res_id   TEXT COLLATE "C" NOT NULL,
    version  BIGINT  NOT NULL,
    seq      BIGINT  NOT NULL,
    deleted  INTEGER NOT NULL,
    PRIMARY KEY (res_type, res_id)
);

-- Search index tables, one per kind of value; rows belong to the current, non-deleted
-- version of a resource and are rewritten with every write.
CREATE TABLE search_token (
    res_type TEXT COLLATE "C" NOT NULL,
    res_id   TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    system   TEXT COLLATE "C",
    code     TEXT COLLATE "C" NOT NULL,
    text     TEXT COLLATE "C"
);
CREATE INDEX search_token_lookup ON search_token (res_type, param, code, system);
CREATE INDEX search_token_param_system ON search_token (res_type, param, system, code);
CREATE INDEX search_token_owner ON search_token (res_type, res_id, param);

CREATE TABLE search_string (
    res_type TEXT COLLATE "C" NOT NULL,
    res_id   TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    norm     TEXT COLLATE "C" NOT NULL,
    exact    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX search_string_lookup ON search_string (res_type, param, norm);
CREATE INDEX search_string_owner ON search_string (res_type, res_id, param);

CREATE TABLE search_date (
    res_type TEXT COLLATE "C" NOT NULL,
    res_id   TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    lo       BIGINT NOT NULL,
    hi       BIGINT NOT NULL
);
CREATE INDEX search_date_lookup ON search_date (res_type, param, lo);
CREATE INDEX search_date_owner ON search_date (res_type, res_id, param);

CREATE TABLE search_number (
    res_type TEXT COLLATE "C" NOT NULL,
    res_id   TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    value    DOUBLE PRECISION NOT NULL
);
CREATE INDEX search_number_lookup ON search_number (res_type, param, value);
CREATE INDEX search_number_owner ON search_number (res_type, res_id, param);

CREATE TABLE search_quantity (
    res_type TEXT COLLATE "C" NOT NULL,
    res_id   TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    value    DOUBLE PRECISION NOT NULL,
    system   TEXT COLLATE "C",
    code     TEXT COLLATE "C",
    unit     TEXT COLLATE "C"
);
CREATE INDEX search_quantity_lookup ON search_quantity (res_type, param, value);
CREATE INDEX search_quantity_owner ON search_quantity (res_type, res_id, param);

CREATE TABLE search_reference (
    res_type    TEXT COLLATE "C" NOT NULL,
    res_id      TEXT COLLATE "C" NOT NULL,
    param       TEXT COLLATE "C" NOT NULL,
    target_type TEXT COLLATE "C",
    target_id   TEXT COLLATE "C",
    url         TEXT COLLATE "C"
);
CREATE INDEX search_reference_lookup ON search_reference (res_type, param, target_id, target_type);
CREATE INDEX search_reference_url ON search_reference (res_type, param, url);
CREATE INDEX search_reference_owner ON search_reference (res_type, res_id, param);
CREATE INDEX search_reference_target ON search_reference (target_type, target_id);

CREATE TABLE search_uri (
    res_type TEXT COLLATE "C" NOT NULL,
    res_id   TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    uri      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX search_uri_lookup ON search_uri (res_type, param, uri);
CREATE INDEX search_uri_owner ON search_uri (res_type, res_id, param);

-- Composite search parameters: one row per combination of component values taken
-- from the same element (s = system, c = code/text/reference/uri, n = number,
-- lo/hi = date range).
CREATE TABLE search_composite (
    res_type TEXT COLLATE "C" NOT NULL,
    res_id   TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    s1 TEXT COLLATE "C", c1 TEXT COLLATE "C", n1 DOUBLE PRECISION, lo1 BIGINT, hi1 BIGINT,
    s2 TEXT COLLATE "C", c2 TEXT COLLATE "C", n2 DOUBLE PRECISION, lo2 BIGINT, hi2 BIGINT,
    s3 TEXT COLLATE "C", c3 TEXT COLLATE "C", n3 DOUBLE PRECISION, lo3 BIGINT, hi3 BIGINT
);
CREATE INDEX search_composite_lookup ON search_composite (res_type, param, c1);
CREATE INDEX search_composite_owner ON search_composite (res_type, res_id, param);

-- Composite search parameters (code-value-quantity, component-code-value-quantity...):
-- one row per combination of component values taken from the same element, with the
-- columns each component type uses (s = system, c = code/text/reference/uri, n = number,
-- lo/hi = date range). R4 composites have two or three components.
CREATE TABLE search_composite (
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    s1 TEXT, c1 TEXT, n1 REAL, lo1 INTEGER, hi1 INTEGER,
    s2 TEXT, c2 TEXT, n2 REAL, lo2 INTEGER, hi2 INTEGER,
    s3 TEXT, c3 TEXT, n3 REAL, lo3 INTEGER, hi3 INTEGER
);
CREATE INDEX search_composite_lookup ON search_composite (res_type, param, c1);
CREATE INDEX search_composite_owner ON search_composite (res_type, res_id);

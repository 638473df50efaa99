-- Owner indexes keyed by the resource alone, (res_type, res_id), without param. Every
-- index row of a resource then shares its key, so B-tree deduplication keeps one key and
-- a list of row pointers per resource (per table) instead of one entry per row: a
-- smaller index and less WAL on every write. The lookups that use them (deleting a
-- resource's rows, checking one candidate's value, sort keys) filter param on the few
-- rows found; deleting the rows of many resources merge-joins them in key order.
DROP INDEX search_token_owner;
CREATE INDEX search_token_owner ON search_token (res_type, res_id);
DROP INDEX search_string_owner;
CREATE INDEX search_string_owner ON search_string (res_type, res_id);
DROP INDEX search_date_owner;
CREATE INDEX search_date_owner ON search_date (res_type, res_id);
DROP INDEX search_number_owner;
CREATE INDEX search_number_owner ON search_number (res_type, res_id);
DROP INDEX search_quantity_owner;
CREATE INDEX search_quantity_owner ON search_quantity (res_type, res_id);
DROP INDEX search_reference_owner;
CREATE INDEX search_reference_owner ON search_reference (res_type, res_id);
DROP INDEX search_uri_owner;
CREATE INDEX search_uri_owner ON search_uri (res_type, res_id);
DROP INDEX search_composite_owner;
CREATE INDEX search_composite_owner ON search_composite (res_type, res_id);
DROP INDEX search_token_patient;
CREATE INDEX search_token_patient ON search_token (patient, res_type, param, code) WHERE patient IS NOT NULL;

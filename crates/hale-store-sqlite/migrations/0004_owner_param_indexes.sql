-- Owner indexes cover the parameter too, so that a search can check a clause for one
-- candidate resource (`EXISTS (... WHERE res_type = r.res_type AND res_id = r.res_id AND
-- param = ?)`) with one index probe instead of listing every match of the clause.
DROP INDEX search_token_owner;
CREATE INDEX search_token_owner ON search_token (res_type, res_id, param);
DROP INDEX search_string_owner;
CREATE INDEX search_string_owner ON search_string (res_type, res_id, param);
DROP INDEX search_date_owner;
CREATE INDEX search_date_owner ON search_date (res_type, res_id, param);
DROP INDEX search_number_owner;
CREATE INDEX search_number_owner ON search_number (res_type, res_id, param);
DROP INDEX search_quantity_owner;
CREATE INDEX search_quantity_owner ON search_quantity (res_type, res_id, param);
DROP INDEX search_reference_owner;
CREATE INDEX search_reference_owner ON search_reference (res_type, res_id, param);
DROP INDEX search_uri_owner;
CREATE INDEX search_uri_owner ON search_uri (res_type, res_id, param);
DROP INDEX search_composite_owner;
CREATE INDEX search_composite_owner ON search_composite (res_type, res_id, param);

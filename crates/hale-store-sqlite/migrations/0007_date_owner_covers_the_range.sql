-- The date owner index carries the range, so that checking one candidate resource for
-- a date clause (`EXISTS (... WHERE res_type = r.res_type AND res_id = r.res_id AND
-- param = ? AND lo ... hi ...)`) and reading its date sort key (`MAX(hi)`) read the
-- index alone. Listing a date clause's matches names search_date_lookup.
DROP INDEX search_date_owner;
CREATE INDEX search_date_owner ON search_date (res_type, res_id, param, lo, hi);

-- Leaner indexes for faster writes:
-- * a reference's full text is kept only when it says more than `Type/id` (absolute,
--   versioned, urn:...); its index covers only those rows;
-- * token lookups by system alone (`system|`) use search_token_lookup's prefix
--   (res_type, param) and filter, so the (res_type, param, system, code) index goes.
DROP INDEX search_token_param_system;
UPDATE search_reference SET url = NULL
 WHERE target_type IS NOT NULL AND target_id IS NOT NULL AND url = target_type || '/' || target_id;
DROP INDEX search_reference_url;
CREATE INDEX search_reference_url ON search_reference (res_type, param, url) WHERE url IS NOT NULL;

-- Leaner indexes for faster writes, as the SQLite store's migration 0005:
-- * token lookups by system alone (`system|`) use search_token_lookup's prefix
--   (res_type, param) and filter, so the (res_type, param, system, code) index goes;
-- * a reference's full text is kept only when it says more than `Type/id` (absolute,
--   versioned, urn:...), so its index covers only those rows.
DROP INDEX search_token_param_system;
UPDATE search_reference SET url = NULL
 WHERE target_type IS NOT NULL AND target_id IS NOT NULL AND url = target_type || '/' || target_id;
DROP INDEX search_reference_url;
CREATE INDEX search_reference_url ON search_reference (res_type, param, url) WHERE url IS NOT NULL;
-- Bodies over about 2 kB are compressed with lz4 rather than pglz (several times
-- faster to compress) where the server is built with it.
DO $$
BEGIN
    ALTER TABLE resource_versions ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END $$;

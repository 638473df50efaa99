-- The lookup indexes of the two largest index tables hold the owner's id, so that a
-- search driven by a token (`Observation?code=...`) or a reference (`?patient=X`) lists
-- its matching resources from the index alone, in id order, instead of reading one
-- table row per match to learn its id. In the token index the id comes before the
-- system: checking one candidate resource for a code (`EXISTS (... AND code = ? AND
-- res_id = r.res_id)`) is then one probe of this index, with or without a system.
DROP INDEX search_token_lookup;
CREATE INDEX search_token_lookup ON search_token (res_type, param, code, res_id, system);
DROP INDEX search_reference_lookup;
CREATE INDEX search_reference_lookup ON search_reference (res_type, param, target_id, target_type, res_id);

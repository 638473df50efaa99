-- Hale's own `_hale-related` token rows (hale-search extract.rs) for the Encounters and
-- CareTeams stored before they were indexed: an Encounter's service provider
-- (Organization) and a CareTeam's participants (Organization, Practitioner), each with
-- the resource's patient key, so the access filter reaches those patients without a
-- `hale reindex`. An Encounter or CareTeam entered in error, or a cancelled Encounter,
-- relates nobody (its `status` token row says so), as the indexer has it.
INSERT INTO search_token (res_type, res_id, param, system, code, text, patient)
SELECT DISTINCT m.res_type, m.res_id, '_hale-related', m.target_type, m.target_id, NULL, p.target_id
  FROM search_reference m LEFT JOIN search_reference p
    ON p.res_type = m.res_type AND p.res_id = m.res_id AND p.param = 'patient' AND p.target_id IS NOT NULL
 WHERE m.target_id IS NOT NULL
   AND ((m.res_type = 'Encounter' AND m.param = 'service-provider' AND m.target_type = 'Organization')
     OR (m.res_type = 'CareTeam' AND m.param = 'participant' AND m.target_type IN ('Organization', 'Practitioner')))
   AND NOT EXISTS (SELECT 1 FROM search_token s
                    WHERE s.res_type = m.res_type AND s.res_id = m.res_id AND s.param = 'status'
                      AND (s.code = 'entered-in-error' OR (s.res_type = 'Encounter' AND s.code = 'cancelled')))
   AND NOT EXISTS (SELECT 1 FROM search_token t
                    WHERE t.res_type = m.res_type AND t.res_id = m.res_id AND t.param = '_hale-related');

-- A patient key on token rows, as the SQLite store's migration 0008: a resource whose
-- `patient` search parameter references X (a Patient, or a Group where allowed) has its
-- token rows stored with patient = X (once per such target; NULL without one), so a search pinned to one
-- patient lists that patient's matches of a token clause from one index range. It is
-- also the distribution column a patient-sharded deployment (Citus) would use.
ALTER TABLE search_token ADD COLUMN patient TEXT COLLATE "C";
UPDATE search_token t SET patient = (
    SELECT MIN(p.target_id) FROM search_reference p
     WHERE p.res_type = t.res_type AND p.res_id = t.res_id
       AND p.param = 'patient' AND p.target_id IS NOT NULL);
INSERT INTO search_token (res_type, res_id, param, system, code, text, patient)
SELECT DISTINCT t.res_type, t.res_id, t.param, t.system, t.code, t.text, p.target_id
  FROM search_token t JOIN search_reference p
    ON p.res_type = t.res_type AND p.res_id = t.res_id AND p.param = 'patient'
   AND p.target_id > t.patient;
CREATE INDEX search_token_patient ON search_token (patient, res_type, param, code, res_id, system)
 WHERE patient IS NOT NULL;

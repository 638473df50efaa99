-- A patient key on token rows: a resource whose `patient` search parameter references
-- X (a Patient, or a Group where allowed) has its token rows stored with patient = X
-- (once per such target; rows of a resource without one have NULL), so a search pinned to one patient
-- (`Observation?patient=X&category=vital-signs`) lists that patient's matches of a
-- token clause from one range of search_token_patient instead of checking each of the
-- patient's resources. It is also the key a patient-sharded deployment would use.
ALTER TABLE search_token ADD COLUMN patient TEXT;
UPDATE search_token SET patient = (
    SELECT MIN(p.target_id) FROM search_reference p INDEXED BY search_reference_owner
     WHERE p.res_type = search_token.res_type AND p.res_id = search_token.res_id
       AND p.param = 'patient' AND p.target_id IS NOT NULL);
INSERT INTO search_token (res_type, res_id, param, system, code, text, patient)
SELECT DISTINCT t.res_type, t.res_id, t.param, t.system, t.code, t.text, p.target_id
  FROM search_token t JOIN search_reference p INDEXED BY search_reference_owner
    ON p.res_type = t.res_type AND p.res_id = t.res_id AND p.param = 'patient'
   AND p.target_id > t.patient;
CREATE INDEX search_token_patient ON search_token (patient, res_type, param, code, res_id, system)
 WHERE patient IS NOT NULL;

//! The roles of Hale's users and the most each may do, before scopes and the
//! relationship to the patient narrow it.

use std::fmt;

use crate::scope::Perm;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs the installation: accounts, clients, the directory (organizations,
    /// practitioners, locations). Sees no patient's record.
    Administrator,
    /// Reads the audit trail. Sees no patient's record otherwise.
    SecurityAdministrator,
    Clinician,
    /// As a clinician, but deletes nothing.
    Nurse,
    /// Registration and scheduling: patients, encounters, appointments, coverage.
    FrontDesk,
    /// A patient, or a proxy (a RelatedPerson) for the patients linked to them: reads
    /// their record and its audit trail.
    Patient,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Administrator,
        Role::SecurityAdministrator,
        Role::Clinician,
        Role::Nurse,
        Role::FrontDesk,
        Role::Patient,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Role::Administrator => "admin",
            Role::SecurityAdministrator => "security-admin",
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::FrontDesk => "front-desk",
            Role::Patient => "patient",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.code() == s)
    }

    /// Roles that must use a second factor (TOTP) to sign in.
    pub fn needs_mfa(self) -> bool {
        matches!(self, Role::Administrator | Role::SecurityAdministrator | Role::Clinician | Role::Nurse)
    }

    /// Whether the role works with patients' records (and so needs an organization,
    /// except for patients, whose record is their own).
    pub fn is_staff_with_patients(self) -> bool {
        matches!(self, Role::Clinician | Role::Nurse | Role::FrontDesk)
    }

    /// The most this role may do with resources of `ty` (`None`: every type at once,
    /// as a system-wide search or history asks).
    pub fn allows(self, perm: Perm, ty: Option<&str>) -> bool {
        let audit = ty == Some("AuditEvent");
        let reading = matches!(perm, Perm::Read | Perm::Search);
        match self {
            Role::Clinician => !audit,
            Role::Nurse => !audit && perm != Perm::Delete,
            // a patient reads the audit trail of their own record (who saw it), and makes
            // requests of their care team (a refill, a message): created, never changed
            // and says who may see their record (a Consent: made, then withdrawn by an update)
            Role::Patient => {
                reading
                    || (perm == Perm::Create && ty.is_some_and(|t| PATIENT_REQUESTS.contains(&t)))
                    || (perm == Perm::Update && ty == Some("Consent"))
            }
            Role::FrontDesk => ty.is_some_and(|t| FRONT_DESK_TYPES.contains(&t) || (reading && is_shared(t))),
            Role::Administrator => ty.is_some_and(is_shared),
            Role::SecurityAdministrator => reading && ty.is_some_and(|t| t == "AuditEvent" || is_shared(t)),
        }
    }
}

fn is_shared(t: &str) -> bool {
    hale_search::access::is_shared(t)
}

/// What a patient may create: requests of their care team about their own record, and
/// the content a message carries (a Binary held to their record by its securityContext).
const PATIENT_REQUESTS: &[&str] = &["Task", "Communication", "Binary", "Consent"];

/// What the front desk registers and schedules.
const FRONT_DESK_TYPES: &[&str] = &[
    "Account",
    "Appointment",
    "AppointmentResponse",
    "Coverage",
    "Encounter",
    "Patient",
    "RelatedPerson",
    "Schedule",
    "Slot",
];

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.code()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn roles_bound_what_a_user_may_do() {
        assert!(Role::Clinician.allows(Perm::Delete, Some("Observation")));
        assert!(!Role::Clinician.allows(Perm::Read, Some("AuditEvent")));
        assert!(!Role::Nurse.allows(Perm::Delete, Some("Observation")));
        assert!(Role::Patient.allows(Perm::Read, Some("Observation")));
        assert!(!Role::Patient.allows(Perm::Create, Some("Observation")));
        assert!(Role::Patient.allows(Perm::Create, Some("Task")));
        assert!(
            Role::Patient.allows(Perm::Create, Some("Binary")) && !Role::Patient.allows(Perm::Update, Some("Binary"))
        );
        assert!(!Role::Patient.allows(Perm::Update, Some("Task")) && !Role::Patient.allows(Perm::Delete, Some("Task")));
        assert!(Role::FrontDesk.allows(Perm::Create, Some("Patient")));
        assert!(!Role::FrontDesk.allows(Perm::Read, Some("Observation")));
        assert!(Role::FrontDesk.allows(Perm::Read, Some("Practitioner")));
        assert!(!Role::Administrator.allows(Perm::Read, Some("Patient")));
        assert!(Role::Administrator.allows(Perm::Create, Some("Organization")));
        assert!(Role::SecurityAdministrator.allows(Perm::Search, Some("AuditEvent")));
        assert!(!Role::SecurityAdministrator.allows(Perm::Read, Some("Condition")));
        assert!(!Role::Administrator.allows(Perm::Search, None));
    }
}

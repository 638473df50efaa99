//! Who is asking, and may they: the [`RequestContext`] every repository is made from,
//! the [`Principal`] in it, the [`Interaction`]s of the gate, the one policy function,
//! [`decide`], and the part of the record the caller may see, [`RequestContext::restriction`].
//! Pure: no I/O.
//!
//! The gate (`hale-repository`) asks [`decide`] before every store call and hands the
//! restriction to the store's SQL; nothing else decides access. Effective permission is
//! role ∩ granted scopes ∩ relationship to the patient.

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod role;
pub mod scope;

use std::net::IpAddr;

use hale_fhir::{Category, ResourceType};
pub use hale_search::access::Restriction;
pub use role::Role;
pub use scope::{Level, Perm, Scopes};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Hale itself: a command (`import`, `export`, `reindex`, `synth`, `demo`,
    /// `migrate-store`) or background work, named by `job`. Audited as such.
    System { job: String },
    /// An HTTP caller who presented no credentials.
    Anonymous,
    /// A signed-in user, through an access token.
    User(Box<UserGrant>),
    /// A client acting for no user (SMART Backend Services, an operator's token).
    Client(Box<ClientGrant>),
}

/// What an access token grants a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserGrant {
    /// The account id.
    pub account: String,
    pub username: String,
    pub role: Role,
    /// `Practitioner/...`, `Patient/...` or `RelatedPerson/...`.
    pub fhir_user: Option<String>,
    /// The Organization id whose patients a staff member works with.
    pub organization: Option<String>,
    /// For the patient role: the patients whose record this user may see (their own, or
    /// for a proxy the patients linked to them).
    pub patients: Vec<String>,
    pub scopes: Scopes,
    /// The patient in context of a SMART launch.
    pub launch_patient: Option<String>,
    /// The client the token was issued to.
    pub client_id: String,
}

/// What an access token grants a client acting for no user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrant {
    pub client_id: String,
    pub scopes: Scopes,
}

impl Principal {
    pub fn system(job: impl Into<String>) -> Self {
        Principal::System { job: job.into() }
    }

    /// How the audit trail and the logs name this principal.
    pub fn display_name(&self) -> String {
        match self {
            Principal::System { job } => format!("system:{job}"),
            Principal::Anonymous => "anonymous".to_string(),
            Principal::User(u) => format!("user:{}", u.username),
            Principal::Client(c) => format!("client:{}", c.client_id),
        }
    }
}

/// Why the information is wanted: the HL7 v3 PurposeOfUse codes an EHR sees
/// (<https://terminology.hl7.org/CodeSystem-v3-ActReason.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurposeOfUse {
    /// `TREAT`: treatment.
    Treatment,
    /// `ETREAT`: emergency treatment (break-the-glass).
    EmergencyTreatment,
    /// `HOPERAT`: healthcare operations (imports, backups, reindexing).
    Operations,
    /// `PATRQT`: the patient's own request.
    PatientRequest,
}

impl PurposeOfUse {
    pub fn code(self) -> &'static str {
        match self {
            PurposeOfUse::Treatment => "TREAT",
            PurposeOfUse::EmergencyTreatment => "ETREAT",
            PurposeOfUse::Operations => "HOPERAT",
            PurposeOfUse::PatientRequest => "PATRQT",
        }
    }
}

/// Break-the-glass grants in force for this caller: access to `patients` outside the
/// usual relationship, each stated with a reason, until it expires (Unix milliseconds).
/// Every access to those patients is flagged in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    pub reason: String,
    pub expires_at: i64,
    pub patients: Vec<String>,
}

/// Everything the gate knows about one request. A repository is made from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub principal: Principal,
    /// The request id (`X-Request-Id`), or a job's run id.
    pub request_id: String,
    /// The client's address, for HTTP requests.
    pub client: Option<IpAddr>,
    pub purpose_of_use: Option<PurposeOfUse>,
    pub break_glass: Option<BreakGlass>,
}

impl RequestContext {
    /// The context of a command or background job: the system principal, purpose
    /// operations.
    pub fn system(job: impl Into<String>) -> Self {
        let job = job.into();
        RequestContext {
            request_id: format!("{job}-{}", std::process::id()),
            principal: Principal::system(job),
            client: None,
            purpose_of_use: Some(PurposeOfUse::Operations),
            break_glass: None,
        }
    }

    /// The context of an HTTP request from a caller without credentials.
    pub fn anonymous(request_id: impl Into<String>, client: Option<IpAddr>) -> Self {
        RequestContext {
            principal: Principal::Anonymous,
            request_id: request_id.into(),
            client,
            purpose_of_use: None,
            break_glass: None,
        }
    }
}

/// What the gate is asked to do. Batch and transaction bundles are decided entry by
/// entry, as the interaction each entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Read,
    Vread,
    Search,
    /// History of a type or of the whole system (a search, in SMART's terms).
    History,
    /// History of one resource (a read, in SMART's terms).
    HistoryInstance,
    Create,
    Update,
    Delete,
    /// `Patient/[id]/$everything`.
    Everything,
    /// `$validate` of a resource that is not written.
    Validate,
    /// Rebuilding the search index from stored JSON (`hale reindex`).
    Reindex,
    /// Reading every version in write order or writing versions back verbatim
    /// (`hale migrate-store`), and refreshing planner statistics.
    Maintenance,
    /// Readiness: does the store answer.
    Ping,
    /// Creating, changing and listing user accounts.
    ManageAccounts,
    /// Issuing an access token outside a sign-in (`hale token`).
    IssueToken,
}

impl Interaction {
    /// The FHIR interaction code (<https://hl7.org/fhir/R4/valueset-type-restful-interaction.html>)
    /// or Hale's name for the others.
    pub fn code(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Search => "search-type",
            Interaction::History => "history",
            Interaction::HistoryInstance => "history-instance",
            Interaction::Create => "create",
            Interaction::Update => "update",
            Interaction::Delete => "delete",
            Interaction::Everything => "operation:everything",
            Interaction::Validate => "operation:validate",
            Interaction::Reindex => "reindex",
            Interaction::Maintenance => "maintenance",
            Interaction::Ping => "ping",
            Interaction::ManageAccounts => "manage-accounts",
            Interaction::IssueToken => "issue-token",
        }
    }

    /// Only the system principal may do these.
    pub fn is_system_only(self) -> bool {
        matches!(self, Interaction::Reindex | Interaction::Maintenance | Interaction::IssueToken)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// [`Category::Unauthorized`] (no or bad credentials) or [`Category::Forbidden`].
    pub category: Category,
    pub reason: String,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Permit,
    Deny(Denial),
}

/// The SMART permission an interaction needs.
fn perm_of(interaction: Interaction) -> Option<Perm> {
    Some(match interaction {
        Interaction::Read
        | Interaction::Vread
        | Interaction::HistoryInstance
        | Interaction::Everything
        | Interaction::Validate => Perm::Read,
        Interaction::Search | Interaction::History => Perm::Search,
        Interaction::Create => Perm::Create,
        Interaction::Update => Perm::Update,
        Interaction::Delete => Perm::Delete,
        Interaction::Ping
        | Interaction::Reindex
        | Interaction::Maintenance
        | Interaction::ManageAccounts
        | Interaction::IssueToken => return None,
    })
}

fn deny(category: Category, reason: impl Into<String>) -> Decision {
    Decision::Deny(Denial { category, reason: reason.into() })
}

/// The one access policy: may `ctx` do `interaction` (on resources of `ty`, when the
/// interaction has a type)?
///
/// - Nobody creates, changes or deletes an AuditEvent: the gate writes the audit trail.
/// - The system principal may do everything else; it is audited as the job it names.
/// - Reindexing and the store's maintenance paths are the system principal's only.
/// - An anonymous caller reaches nothing but the readiness check: 401.
/// - A user may do what both their role and their token's scopes allow; a client acting
///   for no user what its `system/` scopes allow. Which patients' resources they reach
///   is [`RequestContext::restriction`]'s part.
pub fn decide(ctx: &RequestContext, interaction: Interaction, ty: Option<&ResourceType>) -> Decision {
    let t = ty.map(ResourceType::as_str);
    if t == Some("AuditEvent") && matches!(interaction, Interaction::Create | Interaction::Update | Interaction::Delete)
    {
        return deny(Category::Forbidden, "The audit trail cannot be changed: Hale writes AuditEvents itself");
    }
    let on = || t.map(|t| format!(" ({t})")).unwrap_or_default();
    if let Principal::System { .. } = ctx.principal {
        return Decision::Permit;
    }
    if interaction.is_system_only() {
        return deny(
            Category::Forbidden,
            format!("{} is done by Hale's own commands only{}", interaction.code(), on()),
        );
    }
    if interaction == Interaction::ManageAccounts {
        return match &ctx.principal {
            Principal::User(u) if matches!(u.role, Role::Administrator | Role::SecurityAdministrator) => {
                Decision::Permit
            }
            Principal::Anonymous => deny(Category::Unauthorized, "This needs an access token"),
            _ => deny(Category::Forbidden, "Only administrators manage accounts"),
        };
    }
    let Some(perm) = perm_of(interaction) else {
        return Decision::Permit;
    };
    match &ctx.principal {
        Principal::System { .. } => Decision::Permit,
        Principal::Anonymous => deny(Category::Unauthorized, "This needs an access token (Authorization: Bearer ...)"),
        Principal::User(u) => {
            if !u.role.allows(perm, t) {
                return deny(
                    Category::Forbidden,
                    format!("The {} role may not {}{}", u.role, interaction.code(), on()),
                );
            }
            match u.scopes.grants(perm, t) {
                Some(Level::User | Level::Patient) => Decision::Permit,
                _ => {
                    deny(Category::Forbidden, format!("The token's scopes do not grant {}{}", interaction.code(), on()))
                }
            }
        }
        Principal::Client(c) => match c.scopes.grants(perm, t) {
            Some(Level::System) => Decision::Permit,
            _ => deny(Category::Forbidden, format!("The token's scopes do not grant {}{}", interaction.code(), on())),
        },
    }
}

impl RequestContext {
    /// The part of the record this caller may see in a search ([`Interaction::Search`]),
    /// for the store to apply in SQL (`None`: all of it). See
    /// [`RequestContext::restriction_for`].
    pub fn restriction(&self) -> Option<Restriction> {
        self.restriction_for(Interaction::Search)
    }

    /// The part of the record this caller may see or change by `interaction`, for the
    /// store to apply in SQL (`None`: all of it).
    ///
    /// - The system principal: all of it; clients acting for no user: all of it but what
    ///   their granular `system/` scopes filter.
    /// - A patient (or proxy): the patients in their grant.
    /// - Clinicians, nurses and the front desk: the patients of their organization (it
    ///   manages them, their active Consent permits it, one of their Encounters has it as
    ///   service provider or one of their CareTeams lists it, or the user's own
    ///   Practitioner, as a participant; a Consent that denies it wins).
    /// - Administrators and security administrators: no patient.
    /// - A token with patient-level scopes: besides, only the patient in its launch
    ///   context (none without one).
    /// - A clinician's or nurse's break-the-glass grants add their patients, whatever
    ///   the relationship (and a Consent's denial).
    /// - Granular scopes (`patient/Observation.rs?category=laboratory`): the resources
    ///   of their type that match one of the queries of the scopes granting the
    ///   interaction's permission ([`Scopes::filters`]), whatever the patients.
    pub fn restriction_for(&self, interaction: Interaction) -> Option<Restriction> {
        let filters = |scopes: &Scopes, levels: &[Level]| match perm_of(interaction) {
            Some(perm) => scopes.filters(perm, levels),
            None => Vec::new(),
        };
        let u = match &self.principal {
            Principal::System { .. } => return None,
            Principal::Client(c) => {
                let f = filters(&c.scopes, &[Level::System]);
                return (!f.is_empty()).then(|| Restriction::filtered(f));
            }
            Principal::Anonymous => return Some(Restriction::no_patients()),
            Principal::User(u) => u,
        };
        let mut r = match u.role {
            Role::Patient => Restriction::patients(u.patients.iter().cloned()),
            role if role.is_staff_with_patients() => match &u.organization {
                Some(org) => Restriction {
                    practitioner: u
                        .fhir_user
                        .as_deref()
                        .and_then(|f| f.strip_prefix("Practitioner/"))
                        .map(str::to_string),
                    ..Restriction::organization(org.clone())
                },
                None => Restriction::no_patients(),
            },
            _ => Restriction::no_patients(),
        };
        r.filters = filters(&u.scopes, &[Level::User, Level::Patient]);
        let glass: Vec<String> = match (&self.break_glass, u.role) {
            (Some(g), Role::Clinician | Role::Nurse) => g.patients.clone(),
            _ => Vec::new(),
        };
        if u.scopes.is_patient_level() {
            let launch: Vec<String> = u.launch_patient.iter().cloned().collect();
            r.also = launch.iter().filter(|p| glass.contains(p)).cloned().collect();
            r.patients = Some(match r.patients.take() {
                Some(mine) => launch.into_iter().filter(|p| mine.contains(p)).collect(),
                None => launch,
            });
        } else {
            r.also = glass;
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Interaction; 15] = [
        Interaction::Read,
        Interaction::Vread,
        Interaction::Search,
        Interaction::History,
        Interaction::HistoryInstance,
        Interaction::Create,
        Interaction::Update,
        Interaction::Delete,
        Interaction::Everything,
        Interaction::Validate,
        Interaction::Reindex,
        Interaction::Maintenance,
        Interaction::Ping,
        Interaction::ManageAccounts,
        Interaction::IssueToken,
    ];

    fn ty(t: &str) -> ResourceType {
        ResourceType::parse(t).unwrap()
    }

    fn user(role: Role, scopes: &str) -> RequestContext {
        let grant = UserGrant {
            account: "a1".into(),
            username: "sam".into(),
            role,
            fhir_user: None,
            organization: Some("org-1".into()),
            patients: vec!["pat-a".into()],
            scopes: Scopes::parse(scopes, true).unwrap(),
            launch_patient: None,
            client_id: "hale".into(),
        };
        RequestContext { principal: Principal::User(Box::new(grant)), ..RequestContext::anonymous("r", None) }
    }

    fn category(d: Decision) -> Option<Category> {
        match d {
            Decision::Permit => None,
            Decision::Deny(d) => Some(d.category),
        }
    }

    #[test]
    fn the_system_may_do_everything() {
        let ctx = RequestContext::system("import");
        assert_eq!(ctx.principal.display_name(), "system:import");
        assert_eq!(ctx.purpose_of_use, Some(PurposeOfUse::Operations));
        assert_eq!(ctx.restriction(), None);
        for i in ALL {
            assert_eq!(decide(&ctx, i, None), Decision::Permit, "{i:?}");
        }
    }

    #[test]
    fn an_anonymous_caller_reaches_only_the_readiness_check() {
        let ctx = RequestContext::anonymous("r1", None);
        for i in ALL {
            let d = decide(&ctx, i, Some(&ty("Patient")));
            match i {
                Interaction::Ping => assert_eq!(d, Decision::Permit),
                i if i.is_system_only() => {
                    let Decision::Deny(denial) = d else { panic!("{i:?} was permitted") };
                    assert_eq!(denial.category, Category::Forbidden);
                    assert!(denial.reason.contains("(Patient)"), "{}", denial.reason);
                }
                i => assert_eq!(category(d), Some(Category::Unauthorized), "{i:?}"),
            }
        }
    }

    #[test]
    fn a_user_gets_role_and_scopes_together() {
        let c = user(Role::Clinician, "user/Observation.rs");
        assert_eq!(decide(&c, Interaction::Search, Some(&ty("Observation"))), Decision::Permit);
        assert_eq!(decide(&c, Interaction::Read, Some(&ty("Observation"))), Decision::Permit);
        assert_eq!(decide(&c, Interaction::HistoryInstance, Some(&ty("Observation"))), Decision::Permit);
        assert_eq!(category(decide(&c, Interaction::Create, Some(&ty("Observation")))), Some(Category::Forbidden));
        assert_eq!(category(decide(&c, Interaction::Read, Some(&ty("Condition")))), Some(Category::Forbidden));
        // the scope is wide, the role is not
        let p = user(Role::Patient, "user/*.cruds");
        assert_eq!(category(decide(&p, Interaction::Create, Some(&ty("Observation")))), Some(Category::Forbidden));
        assert_eq!(decide(&p, Interaction::Read, Some(&ty("Observation"))), Decision::Permit);
        assert_eq!(decide(&p, Interaction::Search, Some(&ty("AuditEvent"))), Decision::Permit, "who saw my record");
        assert_eq!(category(decide(&c, Interaction::Search, Some(&ty("AuditEvent")))), Some(Category::Forbidden));
        // system scopes are for clients acting for no user
        let s = user(Role::Clinician, "system/*.rs");
        assert_eq!(category(decide(&s, Interaction::Read, Some(&ty("Observation")))), Some(Category::Forbidden));
        for i in ALL.into_iter().filter(|i| i.is_system_only() || *i == Interaction::ManageAccounts) {
            assert_eq!(category(decide(&c, i, None)), Some(Category::Forbidden), "{i:?}");
        }
        assert_eq!(decide(&user(Role::Administrator, ""), Interaction::ManageAccounts, None), Decision::Permit);
    }

    #[test]
    fn a_client_needs_system_scopes() {
        let grant = ClientGrant { client_id: "ops".into(), scopes: Scopes::parse("system/Patient.rs", true).unwrap() };
        let ctx =
            RequestContext { principal: Principal::Client(Box::new(grant)), ..RequestContext::anonymous("r", None) };
        assert_eq!(ctx.principal.display_name(), "client:ops");
        assert_eq!(decide(&ctx, Interaction::Search, Some(&ty("Patient"))), Decision::Permit);
        assert_eq!(category(decide(&ctx, Interaction::Update, Some(&ty("Patient")))), Some(Category::Forbidden));
        assert_eq!(ctx.restriction(), None);
    }

    #[test]
    fn the_restriction_follows_the_relationship() {
        assert_eq!(user(Role::Patient, "user/*.rs").restriction(), Some(Restriction::patients(["pat-a"])));
        assert_eq!(user(Role::Clinician, "user/*.rs").restriction(), Some(Restriction::organization("org-1")));
        let mut dr = user(Role::Clinician, "user/*.rs");
        if let Principal::User(u) = &mut dr.principal {
            u.fhir_user = Some("Practitioner/prac-9".into());
        }
        assert_eq!(dr.restriction().unwrap().practitioner.as_deref(), Some("prac-9"), "their care teams");
        assert_eq!(user(Role::Administrator, "user/*.rs").restriction(), Some(Restriction::no_patients()));
        // patient-level scopes: only the launch patient, and within the user's own reach
        let mut c = user(Role::Clinician, "patient/*.rs");
        assert_eq!(c.restriction().unwrap().patients, Some(vec![]));
        if let Principal::User(u) = &mut c.principal {
            u.launch_patient = Some("pat-z".into());
        }
        let r = c.restriction().unwrap();
        assert_eq!((r.patients, r.organization), (Some(vec!["pat-z".to_string()]), Some("org-1".to_string())));
        let mut p = user(Role::Patient, "patient/*.rs");
        if let Principal::User(u) = &mut p.principal {
            u.launch_patient = Some("pat-b".into());
        }
        assert_eq!(p.restriction().unwrap().patients, Some(vec![]), "a launch cannot widen a patient's reach");
        // break the glass: a clinician's grant adds its patient; a patient's context ignores one
        let glass =
            BreakGlass { reason: "unconscious in the ED".into(), expires_at: i64::MAX, patients: vec!["pat-x".into()] };
        let mut c = user(Role::Clinician, "user/*.rs");
        c.break_glass = Some(glass.clone());
        assert_eq!(c.restriction().unwrap().also, vec!["pat-x".to_string()]);
        let mut p = user(Role::Patient, "user/*.rs");
        p.break_glass = Some(glass);
        assert!(p.restriction().unwrap().also.is_empty());
    }

    #[test]
    fn granular_scopes_become_filters_of_the_interaction_at_hand() {
        let c = user(Role::Clinician, "user/Observation.rs?category=laboratory user/Observation.c");
        assert_eq!(decide(&c, Interaction::Search, Some(&ty("Observation"))), Decision::Permit);
        assert_eq!(decide(&c, Interaction::Read, Some(&ty("Observation"))), Decision::Permit);
        let search = c.restriction_for(Interaction::Search).unwrap();
        assert_eq!(search.organization.as_deref(), Some("org-1"), "the relationship still holds");
        assert_eq!(search.filters_of("Observation").map(|f| f.any_of.len()).collect::<Vec<_>>(), [1]);
        assert!(!search.filters_type("Condition"));
        assert_eq!(c.restriction_for(Interaction::Everything).unwrap().filters.len(), 1);
        assert!(c.restriction_for(Interaction::Create).unwrap().filters.is_empty(), "a plain create scope");
        // updates: granted by no scope of the type, so none of it
        let update = c.restriction_for(Interaction::Update).unwrap();
        assert_eq!(update.filters_of("Observation").map(|f| f.any_of.len()).collect::<Vec<_>>(), [0]);
        // a client: every patient, only the filter
        let grant = ClientGrant {
            client_id: "lab".into(),
            scopes: Scopes::parse("system/Observation.rs?category=laboratory system/Patient.rs", true).unwrap(),
        };
        let ctx =
            RequestContext { principal: Principal::Client(Box::new(grant)), ..RequestContext::anonymous("r", None) };
        let r = ctx.restriction_for(Interaction::Search).unwrap();
        assert!(r.every_patient && r.patients.is_none() && r.organization.is_none());
        assert_eq!(r.filters.len(), 1);
        assert_eq!(RequestContext::system("x").restriction_for(Interaction::Read), None);
    }
}

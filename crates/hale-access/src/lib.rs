//! Who is asking, and may they: the [`RequestContext`] every repository is made from,
//! the [`Principal`] in it, the [`Interaction`]s of the gate and the one policy
//! function, [`decide`]. Pure: no I/O.
//!
//! The gate (`hale-repository`) asks [`decide`] before every store call; nothing else
//! decides access. Today the principals are the system (command-line and background
//! work) and the anonymous HTTP caller; accounts, SMART scopes and the relationship to
//! the patient add principals and filters here.

use std::net::IpAddr;

use hale_fhir::{Category, ResourceType};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Hale itself: a command (`import`, `export`, `reindex`, `synth`, `demo`,
    /// `migrate-store`) or background work, named by `job`. Audited as such.
    System { job: String },
    /// An HTTP caller who presented no credentials.
    Anonymous,
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

/// A break-the-glass grant: access outside the usual relationship, with the reason
/// stated, until `expires_at` (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    pub reason: String,
    pub expires_at: i64,
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
    History,
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
            Interaction::Create => "create",
            Interaction::Update => "update",
            Interaction::Delete => "delete",
            Interaction::Everything => "operation:everything",
            Interaction::Validate => "operation:validate",
            Interaction::Reindex => "reindex",
            Interaction::Maintenance => "maintenance",
            Interaction::Ping => "ping",
        }
    }

    /// Only the system principal may do these.
    pub fn is_system_only(self) -> bool {
        matches!(self, Interaction::Reindex | Interaction::Maintenance)
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

/// The one access policy: may `ctx` do `interaction` (on resources of `ty`, when the
/// interaction has a type)?
///
/// - Nobody creates, changes or deletes an AuditEvent: the gate writes the audit trail.
/// - The system principal may do everything else; it is audited as the job it names.
/// - An anonymous caller may use the FHIR REST interactions, as every caller could
///   before accounts exist; it may never reindex or touch the store's maintenance paths.
pub fn decide(ctx: &RequestContext, interaction: Interaction, ty: Option<&ResourceType>) -> Decision {
    if ty.is_some_and(|t| t.as_str() == "AuditEvent")
        && matches!(interaction, Interaction::Create | Interaction::Update | Interaction::Delete)
    {
        return Decision::Deny(Denial {
            category: Category::Forbidden,
            reason: "The audit trail cannot be changed: Hale writes AuditEvents itself".into(),
        });
    }
    match &ctx.principal {
        Principal::System { .. } => Decision::Permit,
        Principal::Anonymous if interaction.is_system_only() => Decision::Deny(Denial {
            category: Category::Forbidden,
            reason: format!(
                "{} is done by Hale's own commands only{}",
                interaction.code(),
                ty.map(|t| format!(" ({t})")).unwrap_or_default()
            ),
        }),
        Principal::Anonymous => Decision::Permit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Interaction; 12] = [
        Interaction::Read,
        Interaction::Vread,
        Interaction::Search,
        Interaction::History,
        Interaction::Create,
        Interaction::Update,
        Interaction::Delete,
        Interaction::Everything,
        Interaction::Validate,
        Interaction::Reindex,
        Interaction::Maintenance,
        Interaction::Ping,
    ];

    #[test]
    fn the_system_may_do_everything() {
        let ctx = RequestContext::system("import");
        assert_eq!(ctx.principal.display_name(), "system:import");
        assert_eq!(ctx.purpose_of_use, Some(PurposeOfUse::Operations));
        for i in ALL {
            assert_eq!(decide(&ctx, i, None), Decision::Permit, "{i:?}");
        }
    }

    #[test]
    fn an_anonymous_caller_never_reaches_the_system_only_paths() {
        let ctx = RequestContext::anonymous("r1", None);
        let ty = ResourceType::parse("Patient").unwrap();
        for i in ALL {
            let d = decide(&ctx, i, Some(&ty));
            if i.is_system_only() {
                let Decision::Deny(denial) = d else { panic!("{i:?} was permitted") };
                assert_eq!(denial.category, Category::Forbidden);
                assert!(denial.reason.contains("(Patient)"), "{}", denial.reason);
            } else {
                assert_eq!(d, Decision::Permit, "{i:?}");
            }
        }
    }
}

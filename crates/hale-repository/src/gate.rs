//! The one door to the store. [`Gate`] holds the store and makes a [`Repository`] for
//! each request from its [`RequestContext`]; a repository reaches the store only
//! through [`Repository::door`], which asks the access policy ([`hale_access::decide`])
//! first. The store is a private field of this module, so no other code of the crate
//! (interactions, bundles, patches) can call it without passing the door.

use std::sync::Arc;

use hale_access::{Decision, Denial, Interaction, RequestContext, Restriction};
use hale_audit::{Event, Outcome};
use hale_fhir::{Category, ResourceId, ResourceType};
use hale_search::access::is_shared;
use hale_store::{AuditWrite, Criteria, Method, NewVersion, Store, StoredResource, TxOp};

use crate::{Error, Result};

/// Makes repositories. Built once by the composition root (`hale-server`) from the
/// store it opened; cloning it is cheap.
#[derive(Clone)]
pub struct Gate {
    /// The store as [`crate::content::Whole`] shows it: Binary content in its JSON.
    store: Arc<dyn Store>,
    /// The store itself, for Binary content a part at a time.
    raw: Arc<dyn Store>,
    /// The server's own FHIR base (`https://host/fhir`), when the operator set one:
    /// references on it are indexed as the relative references they are.
    own_base: Option<Arc<str>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

impl Gate {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Gate { store: Arc::new(crate::content::Whole(store.clone())), raw: store, own_base: None }
    }

    /// The gate of a server whose FHIR base is `base` (`https://host/fhir`): a stored
    /// reference on that base (`https://host/fhir/Patient/1`) is indexed, searched and
    /// held to its patient as the relative reference it is (`Patient/1`).
    pub fn with_own_base(mut self, base: &str) -> Self {
        // `extract_on` trims it and ignores what is not an absolute URL
        self.own_base = (!base.is_empty()).then(|| Arc::from(base));
        self
    }

    /// The repository for one request.
    pub fn repository(&self, ctx: RequestContext) -> Repository {
        Repository {
            store: self.store.clone(),
            raw: self.raw.clone(),
            ctx: Arc::new(ctx),
            own_base: self.own_base.clone(),
        }
    }

    /// The repository of a command or background job, as the system principal.
    pub fn system(&self, job: &str) -> Repository {
        self.repository(RequestContext::system(job))
    }
}

/// The repository for one request: the store seen through the access policy, as the
/// principal of its context.
#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn Store>,
    /// The store without [`crate::content::Whole`] before it (see [`Gate`]).
    pub(crate) raw: Arc<dyn Store>,
    ctx: Arc<RequestContext>,
    own_base: Option<Arc<str>>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({})", self.ctx.principal.display_name())
    }
}

impl Repository {
    /// Who is asking, and about the request.
    pub fn context(&self) -> &RequestContext {
        &self.ctx
    }

    /// The index rows of `resource` on this server (see [`Gate::with_own_base`]).
    pub(crate) fn index_rows(&self, resource: &serde_json::Value) -> hale_store::IndexRows {
        hale_search::extract::extract_on(resource, self.own_base.as_deref())
    }

    /// The store, for one interaction the policy permits (on resources of `ty`). A
    /// refusal is audited here.
    pub(crate) async fn door(&self, interaction: Interaction, ty: Option<&ResourceType>) -> Result<&dyn Store> {
        match hale_access::decide(&self.ctx, interaction, ty) {
            Decision::Permit => Ok(self.store.as_ref()),
            Decision::Deny(denial) => {
                self.audit_refusal(interaction, ty, &denial).await;
                Err(Error::Denied(denial))
            }
        }
    }

    /// Audits (and logs) a refusal of `interaction` (on resources of `ty`): the door's,
    /// or a write's that [`Repository::check_write`] keeps within the caller's reach.
    async fn audit_refusal(&self, interaction: Interaction, ty: Option<&ResourceType>, denial: &Denial) {
        let mut event = Event::new(interaction.code(), interaction).failed(Outcome::MinorFailure, &denial.reason);
        if let Some(t) = ty {
            event = event.target(t.as_str());
        }
        if let Err(e) = self.store.append_audit(vec![event.row(&self.ctx, &[])]).await {
            tracing::error!(request = %self.ctx.request_id, error = %e, "the refusal could not be audited");
        }
        tracing::warn!(
            principal = %self.ctx.principal.display_name(),
            request = %self.ctx.request_id,
            interaction = interaction.code(),
            resource_type = ty.map(ResourceType::as_str).unwrap_or(""),
            reason = %denial.reason,
            "access denied"
        );
    }

    /// What this caller may see or change by `interaction` (`None`: everything), for
    /// every statement the store runs for them: their patients, and what granular scopes
    /// granting that interaction's permission let through.
    pub(crate) fn restriction(&self, interaction: Interaction) -> Option<Restriction> {
        self.ctx.restriction_for(interaction)
    }

    /// Audits credentials refused before any interaction (a bad, expired or forged
    /// token), as this repository's (anonymous) principal.
    pub async fn audit_refused_credentials(&self, reason: &str) -> Result<()> {
        let event = Event::new("authenticate", Interaction::Ping).failed(Outcome::MinorFailure, reason);
        tracing::warn!(request = %self.ctx.request_id, reason, "credentials refused");
        Ok(self.store.append_audit(vec![event.row(&self.ctx, &[])]).await?)
    }

    /// Conditional criteria, held to what this caller may search, and when they select
    /// what a write changes (`write`: update, delete), to what it may change too.
    pub(crate) fn criteria(&self, ty: &ResourceType, query: &str, write: Option<Interaction>) -> Result<Criteria> {
        let mut c = crate::parse_criteria(ty, query)?;
        let search = self.restriction(Interaction::Search);
        c.request.restriction = match (search, write.and_then(|w| self.restriction(w))) {
            (Some(s), Some(w)) => Some(s.and_filters_of(&w)),
            (s, w) => s.or(w),
        };
        Ok(c)
    }

    /// Whether the current version of `ty/id` is within what this caller may reach by
    /// `interaction`, decided by the same SQL that filters their searches.
    pub(crate) async fn visible(&self, interaction: Interaction, ty: &ResourceType, id: &ResourceId) -> Result<bool> {
        match self.restriction(interaction) {
            None => Ok(true),
            Some(r) => self.visible_under(r, ty, id).await,
        }
    }

    /// [`Repository::visible`] of a version the caller has already read (a read's), so a
    /// Binary's securityContext is taken from it rather than read again.
    pub(crate) async fn visible_stored(&self, interaction: Interaction, s: &StoredResource) -> Result<bool> {
        let Some(r) = self.restriction(interaction) else { return Ok(true) };
        match s.body.as_deref().filter(|_| s.resource_type.as_str() == "Binary").and_then(proxy_in) {
            Some((pty, pid)) => self.passes(r, &pty, &pid).await,
            None => self.passes(r, &s.resource_type, &s.id).await,
        }
    }

    /// Whether the current version of `ty/id` passes `r`. A Binary whose
    /// `securityContext` names another resource than a Patient passes when that
    /// resource does (R4 Binary.securityContext: it "stands in as a proxy" for the
    /// Binary's access rules); one held to a Patient, or to nothing, is tested on its own
    /// index rows.
    async fn visible_under(&self, r: Restriction, ty: &ResourceType, id: &ResourceId) -> Result<bool> {
        if ty.as_str() == "Binary"
            && let Some((pty, pid)) = self.security_proxy(id).await?
        {
            return self.passes(r, &pty, &pid).await;
        }
        self.passes(r, ty, id).await
    }

    /// The resource the current version of Binary `id` names as its securityContext when
    /// it is neither a Patient nor a Binary (a DocumentReference, a DiagnosticReport...),
    /// read without audit: it decides who may see the Binary and is not shown.
    async fn security_proxy(&self, id: &ResourceId) -> Result<Option<(ResourceType, ResourceId)>> {
        let binary = crate::resource_type("Binary")?;
        // the raw store: the Binary's content is not needed
        Ok(self.raw.read(&binary, id).await?.and_then(|s| s.body).as_deref().and_then(proxy_in))
    }

    /// The patients the resource standing in for Binary version `s` concerns (for the
    /// audit trail of a read of the Binary); empty when none stands in.
    pub(crate) async fn proxy_patients(&self, s: &StoredResource) -> Result<Vec<String>> {
        let Some((ty, pid)) = s.body.as_deref().and_then(proxy_in) else { return Ok(Vec::new()) };
        Ok(self.store.read(&ty, &pid).await?.map(|p| hale_audit::patients_of(&p)).unwrap_or_default())
    }

    /// Whether the current version of `ty/id` passes `r`, by its own index rows.
    async fn passes(&self, r: Restriction, ty: &ResourceType, id: &ResourceId) -> Result<bool> {
        if is_shared(ty.as_str()) && !r.filters_type(ty.as_str()) {
            return Ok(true);
        }
        let mut req = hale_search::parse::parse(ty, &[("_id".to_string(), id.to_string())], false)
            .map_err(|i| Error::Invalid(hale_fhir::OperationOutcome::single(i)))?;
        req.restriction = Some(r);
        Ok(self.store.search(&req, 0, true).await?.total.unwrap_or(0) > 0)
    }

    /// A restricted caller's write (`interaction`: create, update or delete) must stay
    /// within what they may change: the current version (if any) within their
    /// restriction for it, the new one matching their granular scopes for it (tested on
    /// its index rows, as the SQL tests stored ones) and a Patient their organization
    /// manages or a resource in the compartment of patients they may see (or that the
    /// same transaction creates, in `new_patients`). Types that hold no patient's
    /// information pass the patient part; types outside every compartment do not.
    ///
    /// Break-the-glass opens a record for a while, never for good: a write that would
    /// give the caller's organization (or the caller) a lasting reach to a patient is
    /// refused when the caller sees that patient only through a break-the-glass grant
    /// ([`lasting_reach`]). A refusal is audited, as the door's are.
    pub(crate) async fn check_write(
        &self,
        interaction: Interaction,
        ty: &ResourceType,
        id: Option<&ResourceId>,
        new: Option<&NewVersion>,
        new_patients: &[String],
    ) -> Result<()> {
        let result = self.check_write_within(interaction, ty, id, new, new_patients).await;
        if let Err(Error::Denied(denial)) = &result {
            self.audit_refusal(interaction, Some(ty), denial).await;
        }
        result
    }

    async fn check_write_within(
        &self,
        interaction: Interaction,
        ty: &ResourceType,
        id: Option<&ResourceId>,
        new: Option<&NewVersion>,
        new_patients: &[String],
    ) -> Result<()> {
        let Some(r) = self.restriction(interaction) else { return Ok(()) };
        let t = ty.as_str();
        let refused =
            |why: &str| Error::Denied(Denial { category: Category::Forbidden, reason: format!("{t}: {why}") });
        if let Some(id) = id
            && !new_patients.iter().any(|p| t == "Patient" && p == id.as_str())
            && self.store.read(ty, id).await?.is_some_and(|s| !s.is_deleted())
            && !self.visible_under(r.clone(), ty, id).await?
        {
            return Err(Error::NotFound(format!("{ty}/{id}")));
        }
        let Some(new) = new else { return Ok(()) };
        if !r.admits(t, &new.index.tokens) {
            return Err(refused("the token's scopes allow this only for resources matching their query"));
        }
        if r.every_patient || is_shared(t) {
            return Ok(());
        }
        let r = r.patients_only();
        const GLASS: &str = "break-the-glass lets you see this patient's record for a while, not relate them for \
                             good to your organization or to you (an Encounter it provides, a CareTeam listing it \
                             or you, a Consent permitting it, their managing organization); ask their organization";
        if t == "Patient" {
            return match (&r.organization, id) {
                (Some(org), _)
                    if new.index.references.iter().any(|x| {
                        x.param == "organization"
                            && x.target_type.as_deref() == Some("Organization")
                            && x.target_id.as_deref() == Some(org.as_str())
                    }) =>
                {
                    match id {
                        Some(id) if self.glass_only(&r, id.as_str(), new_patients).await? => Err(refused(GLASS)),
                        _ => Ok(()),
                    }
                }
                (Some(_), _) => Err(refused("a patient you register must be managed by your organization")),
                (None, _) => Err(refused("you may not register patients")),
            };
        }
        // a Binary whose securityContext names a resource held to patients (not a
        // Patient): the writer must see that resource
        if t == "Binary"
            && let Some((pty, pid)) = new.resource["securityContext"]["reference"].as_str().and_then(proxy_named)
        {
            let held =
                hale_fhir::Definitions::get().access_compartment().get(pty.as_str()).is_some_and(|p| !p.is_empty());
            if !held || is_shared(pty.as_str()) {
                return Err(refused("the securityContext must name a patient's record, or a resource in one"));
            }
            if !self.passes(r, &pty, &pid).await? {
                return Err(refused("the securityContext names a resource you may not see"));
            }
            return Ok(());
        }
        let defs = hale_fhir::Definitions::get();
        let Some(params) = defs.access_compartment().get(t).filter(|p| !p.is_empty()) else {
            return Err(refused("this type is not open to your account"));
        };
        let patients: Vec<&str> = new
            .index
            .references
            .iter()
            .filter(|x| params.contains(&x.param) && x.target_type.as_deref() == Some("Patient"))
            .filter_map(|x| x.target_id.as_deref())
            .collect();
        if patients.is_empty() {
            return Err(refused("the resource must refer to a patient whose record you may see"));
        }
        let patient_ty = crate::resource_type("Patient")?;
        for &p in &patients {
            if new_patients.iter().any(|n| n == p) {
                continue;
            }
            let visible = match ResourceId::parse(p) {
                Some(pid) => self.visible_under(r.clone(), &patient_ty, &pid).await?,
                None => false,
            };
            if !visible {
                return Err(refused("the resource refers to a patient whose record you may not see"));
            }
        }
        if lasting_reach(&r, t, new) {
            for p in &patients {
                if self.glass_only(&r, p, new_patients).await? {
                    return Err(refused(GLASS));
                }
            }
        }
        Ok(())
    }

    /// Whether this caller sees patient `p` through a break-the-glass grant only (under
    /// `r`, their restriction, not as a patient the same transaction registers).
    async fn glass_only(&self, r: &Restriction, p: &str, new_patients: &[String]) -> Result<bool> {
        if !r.also.iter().any(|g| g == p) || new_patients.iter().any(|n| n == p) {
            return Ok(false);
        }
        let Some(pid) = ResourceId::parse(p) else { return Ok(true) };
        let without = Restriction { also: Vec::new(), ..r.clone() };
        Ok(!self.visible_under(without, &crate::resource_type("Patient")?, &pid).await?)
    }

    /// The store, for a transaction whose every operation the policy permits: a write
    /// as a create or update of its type, a deletion as a delete, and each
    /// precondition's search as a search of its type.
    pub(crate) async fn door_transaction(&self, ops: &[TxOp]) -> Result<&dyn Store> {
        // the patients this transaction registers, which its other entries may refer to
        let mut new_patients = Vec::new();
        for op in ops {
            if let TxOp::Write { ty, id, new, method, .. } = op
                && ty.as_str() == "Patient"
            {
                self.check_write(write_interaction(*method), ty, Some(id), Some(new), &[]).await?;
                new_patients.push(id.to_string());
            }
        }
        for op in ops {
            match op {
                TxOp::Write { ty, id, new, method, .. } if ty.as_str() != "Patient" => {
                    self.check_write(write_interaction(*method), ty, Some(id), Some(new), &new_patients).await?
                }
                TxOp::Delete { ty, id, .. } => self.check_write(Interaction::Delete, ty, Some(id), None, &[]).await?,
                _ => {}
            }
        }
        for op in ops {
            let preconditions = match op {
                TxOp::Write { ty, method, preconditions, .. } => {
                    self.door(write_interaction(*method), Some(ty)).await?;
                    preconditions
                }
                TxOp::Delete { ty, preconditions, .. } => {
                    self.door(Interaction::Delete, Some(ty)).await?;
                    preconditions
                }
                TxOp::Check { preconditions } => preconditions,
                TxOp::Record(_) => {
                    // what only Hale's own jobs keep
                    self.door(Interaction::IssueToken, None).await?;
                    continue;
                }
            };
            for p in preconditions {
                if let Some((criteria, _)) = p.search() {
                    self.door(Interaction::Search, Some(&criteria.request.resource_type)).await?;
                }
            }
        }
        Ok(self.store.as_ref())
    }

    /// The audit entry of a write by this repository's principal, for the store to
    /// commit with the write.
    pub(crate) fn audit_write(&self, event: Event) -> AuditWrite {
        let ctx = self.ctx.clone();
        AuditWrite::new(move |touched| event.row(&ctx, touched))
    }

    /// Audits a read-side interaction durably before its result is answered: if the
    /// entry cannot be written, the read fails. A failure is audited as one (a refusal
    /// was audited by the door already).
    pub(crate) async fn audited<T>(
        &self,
        event: Event,
        result: Result<T>,
        touched: impl FnOnce(&T) -> Vec<&StoredResource>,
    ) -> Result<T> {
        let row = match &result {
            Ok(v) => event.row(&self.ctx, &touched(v)),
            Err(Error::Denied(_)) => return result,
            Err(e) => failed(event, e).row(&self.ctx, &[]),
        };
        self.store.append_audit(vec![row]).await?;
        result
    }

    /// Audits a write that failed (one that succeeded was audited in its transaction).
    pub(crate) async fn audit_failed_write<T>(&self, event: Event, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && !matches!(e, Error::Denied(_))
        {
            self.store.append_audit(vec![failed(event, e).row(&self.ctx, &[])]).await?;
        }
        result
    }
}

/// The resource a Binary's `securityContext` reference names (its current version),
/// when it is a relative reference to a resource other than a Patient (held to by Hale's
/// own index rows) or a Binary (a proxy of a proxy stands for nothing).
fn proxy_named(reference: &str) -> Option<(ResourceType, ResourceId)> {
    let (t, id) = hale_fhir::ids::split_reference(reference)?;
    if matches!(t, "Patient" | "Binary") {
        return None;
    }
    Some((ResourceType::parse(t)?, ResourceId::parse(id)?))
}

/// [`proxy_named`] of a stored Binary's JSON text, read for `securityContext` alone: the
/// rest (its data, up to the Binary limit) is skipped, not copied.
fn proxy_in(body: &str) -> Option<(ResourceType, ResourceId)> {
    #[derive(serde::Deserialize)]
    struct Reference<'a> {
        reference: Option<&'a str>,
    }
    #[derive(serde::Deserialize)]
    struct Binary<'a> {
        #[serde(rename = "securityContext", borrow)]
        security_context: Option<Reference<'a>>,
    }
    let b: Binary<'_> = serde_json::from_str(body).ok()?;
    proxy_named(b.security_context?.reference?)
}

/// Whether a new version of a resource of type `ty` would relate its patients to the
/// organization or the Practitioner of restriction `r` (the caller's), reaching them
/// whatever break-the-glass grants say: an Encounter whose service provider, or a
/// CareTeam one of whose participants, it names (whatever its status: a later update
/// could change that), or an active Consent that permits the organization.
fn lasting_reach(r: &Restriction, ty: &str, new: &NewVersion) -> bool {
    let org = r.organization.as_deref();
    let me = r.practitioner.as_deref();
    let relates = hale_search::extract::related_targets(ty, &new.index).into_iter().any(|(t, id)| match t {
        "Organization" => org == Some(id),
        "Practitioner" => me == Some(id),
        _ => false,
    });
    relates
        || (ty == "Consent"
            && new.index.references.iter().any(|x| {
                x.param == hale_search::extract::CONSENT_PERMIT
                    && x.target_type.as_deref() == Some("Organization")
                    && x.target_id.as_deref().is_some_and(|id| org == Some(id))
            }))
}

/// The interaction a transaction's write is: POST creates, the others update.
fn write_interaction(method: Method) -> Interaction {
    if method == Method::Post { Interaction::Create } else { Interaction::Update }
}

fn failed(event: Event, e: &Error) -> Event {
    let outcome = if e.category() == Category::Internal { Outcome::SeriousFailure } else { Outcome::MinorFailure };
    let detail = if e.category() == Category::Internal { "internal error".to_string() } else { e.to_string() };
    event.failed(outcome, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hale_fhir::Category;

    fn gate() -> (tempfile::TempDir, Gate) {
        let dir = tempfile::tempdir().unwrap();
        let store = hale_store_sqlite::SqliteStore::open(&dir.path().join("g.db")).unwrap();
        (dir, Gate::new(Arc::new(store)))
    }

    #[test]
    fn a_binary_names_its_proxy_by_its_security_context() {
        let b = |r: &str| {
            format!(
                r#"{{"resourceType":"Binary","contentType":"text/plain","securityContext":{{"reference":"{r}"}},"data":"aGVsbG8="}}"#
            )
        };
        assert_eq!(
            proxy_in(&b("DocumentReference/d1")).map(|(t, i)| format!("{t}/{i}")).as_deref(),
            Some("DocumentReference/d1")
        );
        assert_eq!(proxy_in(&b("DocumentReference/d1/_history/2")).map(|(_, i)| i.to_string()).as_deref(), Some("d1"));
        for none in ["Patient/p1", "Binary/b2", "Nonsense/x", "http://elsewhere/fhir/DocumentReference/d1"] {
            assert!(proxy_in(&b(none)).is_none(), "{none}");
        }
        assert!(proxy_in(r#"{"resourceType":"Binary","contentType":"text/plain"}"#).is_none());
    }

    #[tokio::test]
    async fn each_repository_carries_its_own_context() {
        let (_d, g) = gate();
        let a = g.repository(RequestContext::anonymous("req-a", None));
        let s = g.system("reindex");
        assert_eq!(a.context().request_id, "req-a");
        assert_eq!(s.context().principal.display_name(), "system:reindex");
    }

    #[tokio::test]
    async fn the_door_refuses_what_the_policy_denies() {
        let (_d, g) = gate();
        let a = g.repository(RequestContext::anonymous("req-a", None));
        let ty = ResourceType::parse("Patient").unwrap();
        let e = a.reindex_type(&ty, |_| {}).await.unwrap_err();
        assert_eq!(e.category(), Category::Forbidden, "{e}");
        assert!(a.versions_after(0, 10).await.is_err());
        assert!(g.system("reindex").reindex_type(&ty, |_| {}).await.is_ok());
    }
}

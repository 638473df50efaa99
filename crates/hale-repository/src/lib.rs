//! The gate. Every read, search, history and write of clinical data goes through a
//! [`Repository`], made per request by the [`Gate`] from a [`RequestContext`]: it asks
//! the access policy before each store call (`gate.rs`: the store is reachable only
//! through that door), validates before it writes, resolves conditional criteria and
//! bundles, and computes index rows. Nothing else holds the raw store.

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod bundle;
mod content;
mod criteria;
mod fhirpath_patch;
#[cfg(test)]
mod fuzz;
mod gate;

use hale_access::Interaction;
use hale_audit::Event;
use hale_fhir::{Category, Issue, IssueType, OperationOutcome, ResourceId, ResourceType, VersionId};
use hale_search::parse::SearchRequest;
use hale_store::{IndexRows, NewVersion};
use serde_json::Value;

pub use accounts::{BREAK_GLASS_MS, TOKENS_VOID, TOKENS_VOID_MS};
pub use bundle::{BundleKind, EntryResponse, EntryStatus, rewrite_references};
pub use criteria::parse_criteria;
pub use gate::{Gate, Repository};
pub use hale_access::{Principal, PurposeOfUse, RequestContext};
pub use hale_audit::chain::{Checkpoints, Error as AuditKeyError, Problem as AuditProblem};
pub use hale_audit::expand as audit_event_text;
/// The store's value types that the gate's callers see (pages, versions, queries); the
/// store itself is never handed out.
pub use hale_store::{
    AuditQuery, CONTENT_PART, Content, CreateOutcome, EverythingQuery, HistoryPage, HistoryQuery, HistoryScope,
    Instant, Method, SearchPage, StoredResource, UpdateOutcome,
};

/// Errors of the gate; each has a [`Category`] that the API maps to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request or resource is invalid; the outcome names each problem.
    #[error("invalid: {0:?}")]
    Invalid(OperationOutcome),
    #[error("resource type '{0}' is not supported")]
    UnknownType(String),
    #[error("{0} is not known")]
    NotFound(String),
    #[error("{0} was deleted")]
    Gone(String, Box<StoredResource>),
    /// The access policy refused the request.
    #[error("{}", .0.reason)]
    Denied(hale_access::Denial),
    #[error(transparent)]
    Store(#[from] hale_store::Error),
    /// A bundle entry failed; the transaction wrote nothing.
    #[error("Bundle.entry[{index}]: {source}")]
    Entry { index: usize, source: Box<Error> },
}

impl Error {
    pub fn category(&self) -> Category {
        match self {
            Error::Invalid(_) => Category::Invalid,
            Error::UnknownType(_) | Error::NotFound(_) => Category::NotFound,
            Error::Gone(..) => Category::Gone,
            Error::Denied(d) => d.category,
            Error::Store(e) => e.category(),
            Error::Entry { source, .. } => source.category(),
        }
    }

    /// The outcome to show the client; internal detail stays in the logs.
    pub fn outcome(&self) -> OperationOutcome {
        match self {
            Error::Invalid(o) => o.clone(),
            Error::Store(hale_store::Error::Backend(_)) => OperationOutcome::single(Issue::error(
                IssueType::Exception,
                "The server could not complete the request; the failure is logged",
            )),
            Error::Entry { index, source } => {
                let mut o = source.outcome();
                for i in &mut o.issues {
                    i.diagnostics = format!("Bundle.entry[{index}]: {}", i.diagnostics);
                    if i.expression.is_none() {
                        i.expression = Some(format!("Bundle.entry[{index}]"));
                    }
                }
                o
            }
            other => OperationOutcome::single(Issue::error(other.category().issue_type(), other.to_string())),
        }
    }

    pub fn invalid(issue: Issue) -> Self {
        Error::Invalid(OperationOutcome::single(issue))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Parses a resource type from a URL segment.
pub fn resource_type(name: &str) -> Result<ResourceType> {
    ResourceType::parse(name).ok_or_else(|| Error::UnknownType(name.chars().take(64).collect()))
}

/// Parses a logical id from a URL segment.
pub fn resource_id(id: &str) -> Result<ResourceId> {
    ResourceId::parse(id).ok_or_else(|| {
        Error::invalid(Issue::error(IssueType::Value, "The id is not a valid FHIR id ([A-Za-z0-9\\-\\.]{1,64})"))
    })
}

/// Parses a version id from a URL segment or `If-Match`.
pub fn version_id(v: &str) -> Result<VersionId> {
    VersionId::parse(v).ok_or_else(|| {
        Error::invalid(Issue::error(
            IssueType::Value,
            format!("'{}' is not a valid version id", v.chars().take(32).collect::<String>()),
        ))
    })
}

/// How `$validate` treats the resource (<https://hl7.org/fhir/R4/resource-operation-validate.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidateMode {
    /// Plain structural validation.
    General,
    Create,
    Update,
    Delete,
}

/// Checks a resource body for a write at `ty` (and `id` for update): the type
/// matches the URL, the id matches, and it validates against the R4 definitions.
fn check_body(ty: &ResourceType, id: Option<&ResourceId>, body: &Value) -> Result<()> {
    check_body_reporting(ty, id, body, false).map(|_| ())
}

/// [`check_body`], with the invariants of severity warning too when `warnings`
/// (`$validate`): they are the `Ok`, or follow the errors of an `Err`.
fn check_body_reporting(
    ty: &ResourceType,
    id: Option<&ResourceId>,
    body: &Value,
    warnings: bool,
) -> Result<Vec<Issue>> {
    let Some(obj) = body.as_object() else {
        return Err(Error::invalid(Issue::error(
            IssueType::Structure,
            "The body must be a JSON object (a FHIR resource)",
        )));
    };
    match obj.get("resourceType").and_then(Value::as_str) {
        Some(rt) if rt == ty.as_str() => {}
        Some(rt) => {
            return Err(Error::invalid(
                Issue::error(
                    IssueType::Invalid,
                    format!("The resource is a {} but the URL is for {ty}", rt.chars().take(64).collect::<String>()),
                )
                .at(format!("{}.resourceType", rt.chars().take(64).collect::<String>())),
            ));
        }
        None => {
            return Err(Error::invalid(
                Issue::error(IssueType::Required, "The resource has no resourceType").at("Resource.resourceType"),
            ));
        }
    }
    if let Some(id) = id {
        match obj.get("id") {
            Some(Value::String(s)) if s == id.as_str() => {}
            Some(_) => {
                return Err(Error::invalid(
                    Issue::error(
                        IssueType::Invalid,
                        format!("The resource id does not match the id in the URL ({id})"),
                    )
                    .at(format!("{ty}.id")),
                ));
            }
            None => {
                return Err(Error::invalid(
                    Issue::error(IssueType::Required, "An update must carry the resource id").at(format!("{ty}.id")),
                ));
            }
        }
    }
    let issues = hale_fhir::validate::validate_resource(body);
    if issues.iter().any(Issue::is_error) {
        return Err(Error::Invalid(OperationOutcome::new(issues)));
    }
    // the specification's invariants, once the structure holds: those of severity
    // warning (best practices such as dom-6) only when asked for, and never refusing
    let violations = if warnings {
        hale_fhirpath::invariants::check_with_warnings(body)
    } else {
        hale_fhirpath::invariants::check(body)
    };
    let (warned, broken): (Vec<Issue>, Vec<Issue>) = violations
        .into_iter()
        .map(|v| {
            let says = format!("{}: {}", v.key, v.human);
            let issue = if v.warning {
                Issue::warning(IssueType::Invariant, says)
            } else {
                Issue::error(IssueType::Invariant, says)
            };
            issue.at(v.location)
        })
        .partition(|i| !i.is_error());
    if !broken.is_empty() {
        return Err(Error::Invalid(OperationOutcome::new(broken.into_iter().chain(warned).collect())));
    }
    Ok(warned)
}

/// Content kept apart is a Binary's, whose JSON then carries no `data` of its own.
fn check_content(ty: &ResourceType, body: &Value, content: Option<&Content>) -> Result<()> {
    if content.is_some() && (ty.as_str() != "Binary" || body.get("data").is_some()) {
        return Err(Error::invalid(
            Issue::error(IssueType::Invalid, "Content sent apart is a Binary's, which then has no data of its own")
                .at(format!("{ty}.data")),
        ));
    }
    Ok(())
}

/// The content of a Binary version kept apart from its JSON, as
/// [`Repository::read_content`] found it: read a part at a time.
#[derive(Clone)]
pub struct BinaryContent {
    store: std::sync::Arc<dyn hale_store::Store>,
    id: ResourceId,
    version: VersionId,
    len: u64,
}

impl std::fmt::Debug for BinaryContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BinaryContent(Binary/{}/_history/{}, {} bytes)", self.id, self.version, self.len)
    }
}

impl BinaryContent {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The part holding byte `offset` (its offset and bytes); an error past the end or
    /// where a part is missing.
    pub async fn part(&self, offset: u64) -> Result<(u64, Vec<u8>)> {
        self.store.content_part(&self.id, self.version, offset).await?.ok_or_else(|| {
            Error::Store(hale_store::Error::Backend(format!(
                "Binary/{} version {}: no content at byte {offset}",
                self.id, self.version
            )))
        })
    }
}

fn prepare(mut body: Value, repo: &Repository) -> NewVersion {
    if let Some(obj) = body.as_object_mut() {
        // the server owns versionId and lastUpdated
        if let Some(meta) = obj.get_mut("meta").and_then(Value::as_object_mut) {
            meta.shift_remove("versionId");
            meta.shift_remove("lastUpdated");
            if meta.is_empty() {
                obj.shift_remove("meta");
            }
        }
    }
    let index = repo.index_rows(&body);
    NewVersion::new(body, index)
}

/// Applies a JSON Patch document (RFC 6902) to a stored version; the result is not yet
/// validated.
pub(crate) fn apply_json_patch(current: &StoredResource, patch: &Value) -> Result<Value> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
        Error::invalid(Issue::error(IssueType::Invalid, format!("The body is not a JSON Patch document: {e}")))
    })?;
    let mut resource: Value = serde_json::from_str(current.body.as_deref().unwrap_or("{}"))
        .map_err(|e| Error::Store(hale_store::Error::Backend(e.to_string())))?;
    // applied to this copy, dropped on an error: no undo (json-patch's undo panics when a
    // `move` to the root cannot be reversed)
    json_patch::patch_unsafe(&mut resource, &ops).map_err(|e| {
        Error::Invalid(OperationOutcome::single(Issue::error(
            IssueType::Processing,
            format!("The patch cannot be applied: {e}"),
        )))
    })?;
    Ok(resource)
}

impl Repository {
    /// The current version; a deleted resource is [`Error::Gone`].
    pub async fn read(&self, ty: &ResourceType, id: &ResourceId) -> Result<StoredResource> {
        self.read_from(ty, id, false).await
    }

    /// The current version of Binary `id`, its content (if kept apart from its JSON)
    /// left out of it and read a part at a time from what this answers with: the
    /// access checks and the audit of [`Repository::read`].
    pub async fn read_content(&self, id: &ResourceId) -> Result<(StoredResource, Option<BinaryContent>)> {
        let ty = resource_type("Binary")?;
        let s = self.read_from(&ty, id, true).await?;
        let content = match self.raw.content_len(&s.id, s.version).await? {
            Some(len) => Some(BinaryContent { store: self.raw.clone(), id: s.id.clone(), version: s.version, len }),
            None => None,
        };
        Ok((s, content))
    }

    /// Puts the content of a Binary version this repository wrote apart from its JSON
    /// ([`Repository::create_with`]) into it, as `data`, to show the resource whole.
    pub async fn whole(&self, s: &mut StoredResource) -> Result<()> {
        Ok(crate::content::whole(self.raw.as_ref(), s).await?)
    }

    async fn read_from(&self, ty: &ResourceType, id: &ResourceId, raw: bool) -> Result<StoredResource> {
        let mut event = Event::new("read", Interaction::Read).target(format!("{ty}/{id}"));
        let result = async {
            let store = self.door(Interaction::Read, Some(ty)).await?;
            let store = if raw { self.raw.as_ref() } else { store };
            match store.read(ty, id).await? {
                Some(s) if !self.visible_stored(Interaction::Read, &s).await? => {
                    Err(Error::NotFound(format!("{ty}/{id}")))
                }
                Some(s) if s.is_deleted() => Err(Error::Gone(format!("{ty}/{id}"), Box::new(s))),
                Some(s) => Ok(s),
                None => Err(Error::NotFound(format!("{ty}/{id}"))),
            }
        }
        .await;
        // a Binary held to a patient's record through another resource (its
        // securityContext) is a read of that record
        if let Ok(s) = &result
            && ty.as_str() == "Binary"
        {
            for p in self.proxy_patients(s).await? {
                event = event.patient(p);
            }
        }
        self.audited(event, result, |s| vec![s]).await
    }

    /// One version; the version of a deletion is [`Error::Gone`].
    pub async fn vread(&self, ty: &ResourceType, id: &ResourceId, version: VersionId) -> Result<StoredResource> {
        let event = Event::new("vread", Interaction::Vread).target(format!("{ty}/{id}/_history/{version}"));
        let result = async {
            let store = self.door(Interaction::Vread, Some(ty)).await?;
            match store.vread(ty, id, version).await? {
                Some(_) if !self.visible(Interaction::Vread, ty, id).await? => {
                    Err(Error::NotFound(format!("{ty}/{id}/_history/{version}")))
                }
                // a granular scope's query is matched on the current version: an older
                // one of a filtered type is not shown (it may not match)
                Some(s)
                    if self.restriction(Interaction::Vread).is_some_and(|r| r.filters_type(ty.as_str()))
                        && store.read(ty, id).await?.is_none_or(|cur| cur.version != s.version) =>
                {
                    Err(Error::NotFound(format!("{ty}/{id}/_history/{version}")))
                }
                Some(s) if s.is_deleted() => Err(Error::Gone(format!("{ty}/{id}/_history/{version}"), Box::new(s))),
                Some(s) => Ok(s),
                None => Err(Error::NotFound(format!("{ty}/{id}/_history/{version}"))),
            }
        }
        .await;
        self.audited(event, result, |s| vec![s]).await
    }

    /// Creates a resource; with `if_none_exist` (a query string) only if nothing matches.
    pub async fn create(&self, ty: &ResourceType, body: Value, if_none_exist: Option<&str>) -> Result<CreateOutcome> {
        self.create_with(ty, body, None, if_none_exist).await
    }

    /// [`Repository::create`] of a Binary whose content is kept apart from its JSON
    /// (which must have no `data`), written to the store a part at a time. The version
    /// created is answered as written, without its content ([`Repository::whole`]).
    pub async fn create_with(
        &self,
        ty: &ResourceType,
        body: Value,
        content: Option<Content>,
        if_none_exist: Option<&str>,
    ) -> Result<CreateOutcome> {
        let event = Event::new("create", Interaction::Create);
        let result = async {
            let criteria = if_none_exist.map(|q| self.criteria(ty, q, None)).transpose()?;
            check_body(ty, None, &body)?;
            check_content(ty, &body, content.as_ref())?;
            let audit = self.audit_write(event.clone());
            let store = self.door(Interaction::Create, Some(ty)).await?;
            let mut new = prepare(body, self);
            new.content = content;
            self.check_write(Interaction::Create, ty, None, Some(&new), &[]).await?;
            Ok(store.create(ty, new, criteria, audit).await?)
        }
        .await;
        self.audit_failed_write(event.target(ty.as_str()), result).await
    }

    /// Updates (or creates with the client's id) a resource.
    pub async fn update(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        body: Value,
        if_match: Option<VersionId>,
    ) -> Result<UpdateOutcome> {
        self.update_with(ty, id, body, None, if_match).await
    }

    /// [`Repository::update`] of a Binary whose content is kept apart from its JSON
    /// (see [`Repository::create_with`]).
    pub async fn update_with(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        body: Value,
        content: Option<Content>,
        if_match: Option<VersionId>,
    ) -> Result<UpdateOutcome> {
        self.update_as("update", ty, id, body, content, if_match).await
    }

    async fn update_as(
        &self,
        subtype: &str,
        ty: &ResourceType,
        id: &ResourceId,
        body: Value,
        content: Option<Content>,
        if_match: Option<VersionId>,
    ) -> Result<UpdateOutcome> {
        let event = Event::new(subtype, Interaction::Update);
        let result = async {
            check_body(ty, Some(id), &body)?;
            check_content(ty, &body, content.as_ref())?;
            let audit = self.audit_write(event.clone());
            let store = self.door(Interaction::Update, Some(ty)).await?;
            let mut new = prepare(body, self);
            new.content = content;
            self.check_write(Interaction::Update, ty, Some(id), Some(&new), &[]).await?;
            Ok(store.update(ty, id, new, if_match, audit).await?)
        }
        .await;
        self.audit_failed_write(event.target(format!("{ty}/{id}")), result).await
    }

    /// Conditional update: the query selects the resource to update (a Binary's content
    /// may be kept apart, as for [`Repository::create_with`]).
    pub async fn conditional_update(
        &self,
        ty: &ResourceType,
        query: &str,
        body: Value,
        content: Option<Content>,
        if_match: Option<VersionId>,
    ) -> Result<UpdateOutcome> {
        let event = Event::new("update", Interaction::Update).query(format!("{ty}?{query}"));
        let result = self.conditional_update_inner(ty, query, body, content, if_match, &event).await;
        self.audit_failed_write(event.target(ty.as_str()), result).await
    }

    async fn conditional_update_inner(
        &self,
        ty: &ResourceType,
        query: &str,
        body: Value,
        content: Option<Content>,
        if_match: Option<VersionId>,
        event: &Event,
    ) -> Result<UpdateOutcome> {
        let criteria = self.criteria(ty, query, Some(Interaction::Update))?;
        let id = match body.get("id") {
            None => None,
            Some(Value::String(s)) => Some(resource_id(s).map_err(|_| {
                Error::invalid(
                    Issue::error(IssueType::Value, "The resource id is not a valid FHIR id").at(format!("{ty}.id")),
                )
            })?),
            Some(_) => {
                return Err(Error::invalid(
                    Issue::error(IssueType::Value, "id must be a string").at(format!("{ty}.id")),
                ));
            }
        };
        match &id {
            Some(id) => check_body(ty, Some(id), &body)?,
            None => check_body(ty, None, &body)?,
        }
        check_content(ty, &body, content.as_ref())?;
        self.door(Interaction::Search, Some(ty)).await?;
        let audit = self.audit_write(event.clone());
        let store = self.door(Interaction::Update, Some(ty)).await?;
        let mut new = prepare(body, self);
        new.content = content;
        self.check_write(Interaction::Update, ty, id.as_ref(), Some(&new), &[]).await?;
        Ok(store.conditional_update(criteria, id, new, if_match, audit).await?)
    }

    /// The current version a PATCH applies to, after its `If-Match`.
    async fn read_for_patch(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        if_match: Option<VersionId>,
    ) -> Result<StoredResource> {
        let current = self.read(ty, id).await?;
        hale_store::check_if_match(ty, id, Some((current.version, false)), if_match).map_err(Error::Store)?;
        Ok(current)
    }

    /// PATCH with a JSON Patch document (RFC 6902): applied to the current version,
    /// validated, and stored only if the resource did not change meanwhile.
    pub async fn patch_json(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        patch: &Value,
        if_match: Option<VersionId>,
    ) -> Result<UpdateOutcome> {
        let current = self.read_for_patch(ty, id, if_match).await?;
        let resource = apply_json_patch(&current, patch)?;
        self.update_as("patch", ty, id, resource, None, Some(current.version)).await
    }

    /// PATCH with a FHIRPath Patch (a `Parameters` resource): applied to the current
    /// version, validated, and stored only if the resource did not change meanwhile.
    pub async fn patch_fhirpath(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        patch: &Value,
        if_match: Option<VersionId>,
    ) -> Result<UpdateOutcome> {
        let current = self.read_for_patch(ty, id, if_match).await?;
        let resource: Value = serde_json::from_str(current.body.as_deref().unwrap_or("{}"))
            .map_err(|e| Error::Store(hale_store::Error::Backend(e.to_string())))?;
        let patched = fhirpath_patch::apply(&resource, patch)?;
        self.update_as("patch", ty, id, patched, None, Some(current.version)).await
    }

    /// Deletes a resource (a versioned tombstone). `None`: nothing current to delete.
    pub async fn delete(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        if_match: Option<VersionId>,
    ) -> Result<Option<StoredResource>> {
        let event = Event::new("delete", Interaction::Delete);
        let result = async {
            let audit = self.audit_write(event.clone());
            let store = self.door(Interaction::Delete, Some(ty)).await?;
            self.check_write(Interaction::Delete, ty, Some(id), None, &[]).await?;
            Ok(store.delete(ty, id, if_match, audit).await?)
        }
        .await;
        self.audit_failed_write(event.target(format!("{ty}/{id}")), result).await
    }

    /// Conditional delete of the single resource the query selects.
    pub async fn conditional_delete(&self, ty: &ResourceType, query: &str) -> Result<Option<StoredResource>> {
        let event = Event::new("delete", Interaction::Delete).query(format!("{ty}?{query}"));
        let result = async {
            let criteria = self.criteria(ty, query, Some(Interaction::Delete))?;
            self.door(Interaction::Search, Some(ty)).await?;
            let audit = self.audit_write(event.clone());
            Ok(self.door(Interaction::Delete, Some(ty)).await?.conditional_delete(criteria, audit).await?)
        }
        .await;
        self.audit_failed_write(event.target(ty.as_str()), result).await
    }

    /// A page of a type search.
    pub async fn search(&self, request: &SearchRequest, page_size: usize, want_total: bool) -> Result<SearchPage> {
        let mut event = Event::new("search-type", Interaction::Search).query(search_query(request));
        if let Some(c) = &request.compartment
            && c.owner_type == "Patient"
        {
            event = event.patient(c.owner_id.as_str());
        }
        let result = async {
            let store = self.door(Interaction::Search, Some(&request.resource_type)).await?;
            match self.restriction(Interaction::Search) {
                None => Ok(store.search(request, page_size, want_total).await?),
                Some(r) => {
                    let mut held = request.clone();
                    held.restriction = Some(r);
                    Ok(store.search(&held, page_size, want_total).await?)
                }
            }
        }
        .await;
        self.audited(event, result, |p: &SearchPage| p.entries.iter().chain(&p.included).collect()).await
    }

    /// `Patient/[id]/$everything`.
    pub async fn everything(&self, patient: &ResourceId, query: &EverythingQuery) -> Result<SearchPage> {
        let ty = resource_type("Patient")?;
        self.read(&ty, patient).await?;
        let event = Event::new("operation:everything", Interaction::Everything).patient(patient.as_str());
        let result = async {
            let store = self.door(Interaction::Everything, Some(&ty)).await?;
            let mut held = query.clone();
            held.restriction = self.restriction(Interaction::Everything);
            Ok(store.everything(patient, &held).await?)
        }
        .await;
        self.audited(event, result, |p: &SearchPage| p.entries.iter().chain(&p.included).collect()).await
    }

    /// History, newest first.
    pub async fn history(&self, scope: &HistoryScope, query: &HistoryQuery) -> Result<HistoryPage> {
        let ty = match scope {
            HistoryScope::System => None,
            HistoryScope::Type(ty) | HistoryScope::Instance(ty, _) => Some(ty),
        };
        let subtype = match scope {
            HistoryScope::System => "history-system",
            HistoryScope::Type(_) => "history-type",
            HistoryScope::Instance(..) => "history-instance",
        };
        let interaction = if matches!(scope, HistoryScope::Instance(..)) {
            Interaction::HistoryInstance
        } else {
            Interaction::History
        };
        let mut event = Event::new(subtype, interaction);
        if let HistoryScope::Instance(ty, id) = scope {
            event = event.target(format!("{ty}/{id}"));
        }
        let result = async {
            let store = self.door(interaction, ty).await?;
            if let HistoryScope::Instance(ty, id) = scope
                && (store.read(ty, id).await?.is_none() || !self.visible(interaction, ty, id).await?)
            {
                return Err(Error::NotFound(format!("{ty}/{id}")));
            }
            let mut held = query.clone();
            held.restriction = self.restriction(interaction);
            Ok(store.history(scope, &held).await?)
        }
        .await;
        self.audited(event, result, |p: &HistoryPage| p.entries.iter().collect()).await
    }

    /// `$validate`: the outcome of validating `body` for `mode`, without writing.
    pub async fn validate(
        &self,
        ty: &ResourceType,
        id: Option<&ResourceId>,
        body: Option<&Value>,
        mode: ValidateMode,
    ) -> Result<OperationOutcome> {
        if mode == ValidateMode::Delete {
            let id =
                id.ok_or_else(|| Error::invalid(Issue::error(IssueType::Required, "mode=delete needs a resource id")))?;
            self.read(ty, id).await?;
            return Ok(OperationOutcome::default());
        }
        let body = body.ok_or_else(|| Error::invalid(Issue::error(IssueType::Required, "No resource to validate")))?;
        let id_for_check =
            match mode {
                ValidateMode::Update => Some(id.ok_or_else(|| {
                    Error::invalid(Issue::error(IssueType::Required, "mode=update needs a resource id"))
                })?),
                _ => None,
            };
        // the invariants of severity warning (best practices such as dom-6) are reported
        // beside what refuses, once the structure holds (as the invariants are checked)
        match check_body_reporting(ty, id_for_check, body, true) {
            Ok(warnings) => Ok(OperationOutcome::new(warnings)),
            Err(Error::Invalid(o)) => Ok(o),
            Err(e) => Err(e),
        }
    }

    /// Refreshes the store's planner statistics (after a bulk load; system only).
    pub async fn optimize(&self) -> Result<()> {
        Ok(self.door(Interaction::Maintenance, None).await?.optimize().await?)
    }

    /// Recomputes the index rows of every current resource of `ty` from its stored
    /// JSON; `progress` is called with the number done so far. Returns the count.
    pub async fn reindex_type(&self, ty: &ResourceType, mut progress: impl FnMut(usize)) -> Result<usize> {
        let mut req =
            hale_search::parse::parse(ty, &[], false).map_err(|i| Error::Invalid(OperationOutcome::single(i)))?;
        let store = self.door(Interaction::Reindex, Some(ty)).await?;
        let mut done = 0;
        loop {
            let page = store.search(&req, 500, false).await?;
            let mut items = Vec::with_capacity(page.entries.len());
            for e in &page.entries {
                let Some(body) = &e.body else { continue };
                let v: Value = serde_json::from_str(body)
                    .map_err(|err| Error::Store(hale_store::Error::Backend(err.to_string())))?;
                items.push((e.resource_type.clone(), e.id.clone(), e.version, self.index_rows(&v)));
            }
            done += items.len();
            store.replace_index(items).await?;
            progress(done);
            match page.next {
                Some(c) => req.cursor = Some(c),
                None => break,
            }
        }
        let event = Event::new("reindex", Interaction::Reindex).target(ty.as_str()).query(format!("{done} resources"));
        store.append_audit(vec![event.row(self.context(), &[])]).await?;
        Ok(done)
    }

    /// Readiness: the store answers.
    pub async fn ping(&self) -> Result<()> {
        Ok(self.door(Interaction::Ping, None).await?.ping().await?)
    }

    /// Up to `limit` versions of any resource written after position `after`, oldest
    /// first, each with its position (`hale migrate-store`; system only).
    pub async fn versions_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>> {
        let event = Event::new("maintenance:read-versions", Interaction::Maintenance);
        let result =
            async { Ok(self.door(Interaction::Maintenance, None).await?.versions_after(after, limit).await?) }.await;
        self.audited(event, result, |v: &Vec<(i64, StoredResource)>| v.iter().map(|(_, s)| s).collect()).await
    }

    /// Whether the store holds no version of any resource (system only). Not audited: it
    /// tells whether the store is new, nothing of anyone's record.
    pub async fn holds_no_resource(&self) -> Result<bool> {
        Ok(self.door(Interaction::Maintenance, None).await?.versions_after(0, 1).await?.is_empty())
    }

    /// Writes versions back verbatim, each with its index rows (computed here from its
    /// JSON; none for a deletion or an older version), into a store being filled by
    /// `hale migrate-store` (system only). A Binary's content whose JSON ends with it
    /// (as [`Repository::versions_after`] gives content kept apart) is kept apart again.
    pub async fn restore(&self, versions: Vec<StoredResource>) -> Result<()> {
        let store = self.door(Interaction::Maintenance, None).await?;
        let event = Event::new("maintenance:restore", Interaction::Maintenance);
        let row = event.row(self.context(), &versions.iter().collect::<Vec<_>>());
        let mut batch = Vec::with_capacity(versions.len());
        for mut v in versions {
            // a Binary's content goes apart from its JSON again
            let content = match crate::content::apart(&v)? {
                Some((body, content)) => {
                    v.body = Some(body);
                    Some(content)
                }
                None => None,
            };
            let index = match &v.body {
                Some(body) => {
                    let json: Value = serde_json::from_str(body).map_err(|_| {
                        Error::Store(hale_store::Error::Backend(format!(
                            "{}/{}/_history/{}: the stored JSON cannot be read",
                            v.resource_type, v.id, v.version
                        )))
                    })?;
                    self.index_rows(&json)
                }
                None => IndexRows::default(),
            };
            batch.push((v, index, content));
        }
        store.restore(batch).await?;
        store.append_audit(vec![row]).await?;
        Ok(())
    }
}

/// What [`Repository::verify_audit`] found.
#[derive(Debug, Clone)]
pub struct AuditVerification {
    pub report: hale_audit::chain::Report,
    /// Lines of the checkpoint file that are not validly signed.
    pub bad_checkpoints: Vec<hale_audit::chain::Problem>,
    /// Entries written but not yet linked into the chain.
    pub unchained: u64,
}

impl AuditVerification {
    /// The first problem found, if any.
    pub fn problem(&self) -> Option<&hale_audit::chain::Problem> {
        self.report.problem.as_ref().or(self.bad_checkpoints.first())
    }
}

fn audit_error(e: hale_audit::chain::Error) -> Error {
    Error::Store(hale_store::Error::Backend(e.to_string()))
}

impl Repository {
    /// Links the audit entries written since the last run into the hash chain and
    /// signs a checkpoint of its new head into the data directory (system only).
    /// Returns how many entries it linked.
    pub async fn chain_audit(&self, checkpoints: &hale_audit::chain::Checkpoints) -> Result<usize> {
        let store = self.door(Interaction::Maintenance, None).await?;
        let (linked, head) = chain_in_batches(10_000, || store.chain_audit(10_000, hale_audit::chain::link)).await?;
        if let Some((pos, hash)) = head {
            let key = checkpoints.signing_key().map_err(audit_error)?;
            let (_, line) = checkpoints.append_line(&key, pos, &hash).map_err(audit_error)?;
            if checkpoints.is_shared() {
                store.append_checkpoint(line).await?;
            }
        }
        Ok(linked)
    }

    /// How many entries of the log are not yet linked into the chain (system only). On
    /// SQLite this moves the read-audit journal into the log first.
    pub async fn audit_backlog(&self) -> Result<u64> {
        let store = self.door(Interaction::Maintenance, None).await?;
        Ok(store.audit_unchained().await?)
    }

    /// The key material every node of the store shares under `name`, `candidate` stored
    /// first when there is none (system only; see [`hale_store::Store::server_key`]).
    pub async fn shared_key(&self, name: &str, candidate: String) -> Result<String> {
        let store = self.door(Interaction::Maintenance, None).await?;
        Ok(store.server_key(name, candidate).await?)
    }

    /// Verifies the whole chain against itself and the signed checkpoints (system only).
    pub async fn verify_audit(&self, checkpoints: &hale_audit::chain::Checkpoints) -> Result<AuditVerification> {
        let store = self.door(Interaction::Maintenance, None).await?;
        let key = checkpoints.verifying_key().map_err(audit_error)?;
        let (mut good, mut bad_checkpoints) = checkpoints.load(key.as_ref()).map_err(audit_error)?;
        if checkpoints.is_shared() {
            // every node's checkpoints, signed with the key they share
            let lines = store.checkpoints().await?;
            let (more, bad) =
                hale_audit::chain::Checkpoints::parse_lines(lines.iter().map(String::as_str), key.as_ref());
            good.extend(more);
            bad_checkpoints.extend(bad);
        }
        let mut v = hale_audit::chain::Verifier::new(&good);
        let mut after = 0;
        'pages: loop {
            let page = store.audit_chain(after, 20_000).await?;
            let Some(last) = page.last() else { break };
            after = last.pos;
            for e in &page {
                if !v.feed(e) {
                    break 'pages;
                }
            }
        }
        let unchained = store.audit_unchained().await?;
        Ok(AuditVerification { report: v.finish(), bad_checkpoints, unchained })
    }
}

/// Links entries by `step`s of `limit`: until a step links fewer than `limit` (the
/// entries written meanwhile are the next run's: were a run to go on until a step found
/// none, a steady stream of audited reads would keep it committing a few entries at a
/// time). Returns how many were linked and the chain's last head.
async fn chain_in_batches<F, Fut>(limit: usize, mut step: F) -> Result<(usize, Option<(i64, Vec<u8>)>)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = hale_store::Result<(usize, Option<(i64, Vec<u8>)>)>>,
{
    let mut linked = 0;
    let mut head = None;
    loop {
        let (n, h) = step().await?;
        linked += n;
        if n > 0 {
            head = h;
        }
        if n < limit {
            return Ok((linked, head));
        }
    }
}

/// A search's parameters as asked, for its audit entry.
fn search_query(request: &SearchRequest) -> String {
    let params: Vec<String> = request.canonical.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}?{}", request.resource_type, params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let store = hale_store_sqlite::SqliteStore::open(&dir.path().join("r.db")).unwrap();
        (dir, Gate::new(std::sync::Arc::new(store)).system("test"))
    }

    /// Found by `fuzz::fuzz_patches` (seed 3): a JSON Patch whose `move` to the root
    /// succeeds and whose next operation fails made json-patch's undo panic
    /// ("unable to undo applied patches"), a 500. It is an error now, and the stored
    /// version is untouched.
    #[test]
    fn a_json_patch_failing_after_a_move_to_the_root_is_an_error_not_a_panic() {
        let stored = StoredResource {
            resource_type: ResourceType::parse("Patient").unwrap(),
            id: ResourceId::parse("p").unwrap(),
            version: hale_fhir::VersionId::FIRST,
            last_updated: Instant::from_millis(0),
            method: hale_store::Method::Put,
            body: Some(json!({"resourceType":"Patient","id":"p","gender":"female"}).to_string()),
        };
        let patch = json!([{"op":"move","from":"/gender","path":""},{"op":"test","path":"/id","value":"p"}]);
        assert!(apply_json_patch(&stored, &patch).is_err());
    }

    /// Content sent apart is stored apart (the JSON without `data`, the bytes in parts)
    /// and shown whole everywhere but its own read; a copy of the store keeps it apart.
    #[tokio::test]
    async fn a_binarys_content_is_kept_apart_and_shown_whole() {
        use base64::Engine;
        let (_dir, repo) = repo().await;
        let bytes: Vec<u8> = (0..(CONTENT_PART as u32 * 2 + 11)).map(|i| (i % 251) as u8).collect();
        let spool = |b: &[u8]| {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut f, b).unwrap();
            Content::new(f.into_temp_path(), b.len() as u64)
        };
        let ty = resource_type("Binary").unwrap();
        let body = json!({"resourceType": "Binary", "contentType": "application/pdf"});
        let mut created = match repo.create_with(&ty, body.clone(), Some(spool(&bytes)), None).await.unwrap() {
            CreateOutcome::Created(s) => s,
            other => panic!("{other:?}"),
        };
        // answered as written, whole when asked
        assert!(!created.body.as_deref().unwrap().contains("\"data\""));
        repo.whole(&mut created).await.unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let whole: Value = serde_json::from_str(created.body.as_deref().unwrap()).unwrap();
        assert_eq!(whole["data"], b64);
        assert_eq!(repo.read(&ty, &created.id).await.unwrap().body, created.body);
        // as stored: the JSON without data, the bytes in three parts
        let raw = repo.raw.read(&ty, &created.id).await.unwrap().unwrap();
        assert!(!raw.body.as_deref().unwrap().contains("\"data\""), "{:?}", raw.body);
        assert_eq!(repo.raw.content_len(&created.id, created.version).await.unwrap(), Some(bytes.len() as u64));
        let (_, content) = repo.read_content(&created.id).await.unwrap();
        let content = content.unwrap();
        let (at, part) = content.part(CONTENT_PART as u64 + 5).await.unwrap();
        assert_eq!((at, part.len()), (CONTENT_PART as u64, CONTENT_PART));
        assert_eq!(content.part(bytes.len() as u64 - 1).await.unwrap().1, bytes[2 * CONTENT_PART..]);
        assert!(content.part(bytes.len() as u64).await.is_err());
        // data of its own beside content sent apart is refused
        let both = json!({"resourceType": "Binary", "contentType": "text/plain", "data": "aGk="});
        assert!(matches!(repo.create_with(&ty, both, Some(spool(b"x")), None).await, Err(Error::Invalid(_))));
        // a copy keeps it apart, and the same
        let (_dir2, copy) = self::tests::repo().await;
        let versions: Vec<StoredResource> =
            repo.versions_after(0, 100).await.unwrap().into_iter().map(|(_, v)| v).collect();
        copy.restore(versions).await.unwrap();
        let raw_copy = copy.raw.read(&ty, &created.id).await.unwrap().unwrap();
        assert_eq!(raw_copy.body, raw.body);
        assert_eq!(copy.read(&ty, &created.id).await.unwrap().body, created.body);
    }

    #[tokio::test]
    async fn invalid_resources_are_not_stored() {
        let (_d, r) = repo().await;
        let ty = resource_type("Patient").unwrap();
        let err = r.create(&ty, json!({"resourceType":"Patient","birthDate":"1970-13"}), None).await.unwrap_err();
        let Error::Invalid(o) = err else { panic!() };
        assert_eq!(o.issues[0].expression.as_deref(), Some("Patient.birthDate"));
        let h = r
            .history(&HistoryScope::System, &HistoryQuery { since: None, count: 10, cursor: None, restriction: None })
            .await
            .unwrap();
        assert!(h.entries.is_empty());
    }

    #[tokio::test]
    async fn update_checks_type_and_id() {
        let (_d, r) = repo().await;
        let ty = resource_type("Patient").unwrap();
        let id = resource_id("a").unwrap();
        let e = r.update(&ty, &id, json!({"resourceType":"Patient","id":"b"}), None).await.unwrap_err();
        assert!(matches!(e, Error::Invalid(_)));
        let e = r.update(&ty, &id, json!({"resourceType":"Observation","id":"a"}), None).await.unwrap_err();
        assert!(matches!(e, Error::Invalid(_)));
        let ok = r
            .update(&ty, &id, json!({"resourceType":"Patient","id":"a","meta":{"versionId":"77"}}), None)
            .await
            .unwrap();
        assert!(ok.created);
        assert!(ok.stored.body.unwrap().contains(r#""versionId":"1""#));
    }

    #[tokio::test]
    async fn a_chainer_run_ends_when_a_batch_was_not_full() {
        // reads keep being audited while a run links: each step finds a few new entries,
        // and the run must not chase them (each step is a commit)
        let mut calls = 0;
        let (n, head) = chain_in_batches(100, || {
            calls += 1;
            std::future::ready(Ok((5, Some((calls, vec![1u8])))))
        })
        .await
        .unwrap();
        assert_eq!((calls, n, head), (1, 5, Some((1, vec![1u8]))));
        // a full batch means more were waiting: the next one is linked in the same run
        let mut calls = 0;
        let (n, head) = chain_in_batches(100, || {
            calls += 1;
            let n = if calls < 3 { 100 } else { 0 };
            std::future::ready(Ok((n, (n > 0).then(|| (calls, vec![2u8])))))
        })
        .await
        .unwrap();
        assert_eq!((calls, n, head), (3, 200, Some((2, vec![2u8]))));
    }
}

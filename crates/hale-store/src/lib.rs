//! The storage contract every backend implements: resources stored as JSON text,
//! versioned (every create, update and delete writes a new version; a delete is a
//! versioned tombstone), with history and the index rows conditional operations and
//! search resolve against.
//!
//! Preconditions (`If-Match`, `If-None-Exist`, conditional update and delete) are
//! evaluated by the backend inside the write transaction, so they are race-free.

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod sql;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use hale_fhir::{Category, ResourceId, ResourceType, VersionId};
use hale_search::parse::SearchRequest;
use serde_json::Value;

/// An instant with millisecond precision, as stored (`meta.lastUpdated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(i64);

impl Instant {
    pub fn now() -> Self {
        Instant(Utc::now().timestamp_millis())
    }
    pub fn from_millis(ms: i64) -> Self {
        Instant(ms)
    }
    pub fn millis(self) -> i64 {
        self.0
    }
    /// Parses an R4 `instant` or a `dateTime` with at least a day (missing time means
    /// midnight UTC); used for `_since`.
    pub fn parse(s: &str) -> Option<Self> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return Some(Instant(dt.timestamp_millis()));
        }
        let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        Some(Instant(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?).timestamp_millis()))
    }
    /// `2026-11-22T17:56:21.123Z`
    pub fn to_fhir(self) -> String {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    }
    /// RFC 7231 date for the `Last-Modified` header.
    pub fn to_http_date(self) -> String {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .map(|d| d.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
            .unwrap_or_default()
    }
}

/// How a version came to be, as `Bundle.entry.request.method` reports it in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }
}

/// One stored version of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub resource_type: ResourceType,
    pub id: ResourceId,
    pub version: VersionId,
    pub last_updated: Instant,
    pub method: Method,
    /// The resource as JSON text with `id` and `meta` set; `None` for a deletion.
    pub body: Option<String>,
}

impl StoredResource {
    pub fn is_deleted(&self) -> bool {
        self.body.is_none()
    }
}

pub use hale_search::index::{DateIndex, IndexRows, NumberIndex, ReferenceIndex, StringIndex, TokenIndex, UriIndex};

/// Criteria of a conditional interaction: the current resources a search selects
/// (its clauses only; no sorting, paging or includes).
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    pub request: SearchRequest,
}

/// A resource to write: its JSON (id and meta are set by the store) and index rows.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub resource: Value,
    pub index: IndexRows,
    /// A Binary's content kept apart from its JSON (which then has no `data`): stored in
    /// parts beside the version, and read back in parts ([`Store::content_part`]).
    pub content: Option<Content>,
}

impl NewVersion {
    /// A version whose content, if any, is in its JSON.
    pub fn new(resource: Value, index: IndexRows) -> Self {
        NewVersion { resource, index, content: None }
    }
}

/// The parts of a [`Content`], read one at a time.
pub struct Parts {
    file: std::fs::File,
    at: u64,
    len: u64,
}

impl Iterator for Parts {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::Read;
        if self.at >= self.len {
            // the file must end where the content does
            return match self.file.read(&mut [0u8; 1]) {
                Ok(0) => None,
                Ok(_) => {
                    self.at = u64::MAX;
                    Some(Err(Error::Backend("content: the file is longer than its length".into())))
                }
                Err(e) => Some(Err(Error::Backend(format!("content: {e}")))),
            };
        }
        let want = (self.len - self.at).min(CONTENT_PART as u64) as usize;
        let mut buf = vec![0u8; want];
        if let Err(e) = self.file.read_exact(&mut buf) {
            self.at = u64::MAX;
            return Some(Err(Error::Backend(format!("content: {e}"))));
        }
        let at = self.at;
        self.at += want as u64;
        Some(Ok((at, buf)))
    }
}

/// Bytes a Binary's content is stored in: each part its own row, read on its own.
pub const CONTENT_PART: usize = 512 * 1024;

/// The content of a Binary kept apart from its JSON, as a file it was spooled to (and
/// that is removed when the last handle goes): a store reads it a part at a time, so
/// no more than a part is in memory while it is written.
#[derive(Debug, Clone)]
pub struct Content {
    file: std::sync::Arc<tempfile::TempPath>,
    len: u64,
}

impl Content {
    /// Content spooled to `file`, of `len` bytes.
    pub fn new(file: tempfile::TempPath, len: u64) -> Self {
        Content { file: std::sync::Arc::new(file), len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The parts in turn (each part's offset and bytes), read from the file; an error
    /// when the file ends before `len` bytes or holds more.
    pub fn parts(&self) -> Result<Parts> {
        let file = std::fs::File::open(&**self.file).map_err(|e| Error::Backend(format!("content: {e}")))?;
        Ok(Parts { file, at: 0, len: self.len })
    }
}

/// What a create did.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created(StoredResource),
    /// `If-None-Exist` matched this resource; nothing was written.
    Existing(StoredResource),
}

/// What an update did.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateOutcome {
    pub stored: StoredResource,
    /// True when the update created the resource (update-as-create).
    pub created: bool,
}

/// Where history is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScope {
    System,
    Type(ResourceType),
    Instance(ResourceType, ResourceId),
}

/// A page of history, newest first.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub since: Option<Instant>,
    pub count: usize,
    /// Continue after this opaque position (from an earlier page's `next`).
    pub cursor: Option<i64>,
    /// What the caller may see (set by the gate).
    pub restriction: Option<hale_search::access::Restriction>,
}

#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub entries: Vec<StoredResource>,
    /// Position to pass as `cursor` for the next page, if there is one.
    pub next: Option<i64>,
    pub total: Option<u64>,
}

/// A page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub entries: Vec<StoredResource>,
    /// Resources added by `_include` and `_revinclude`.
    pub included: Vec<StoredResource>,
    /// Cursor for the next page, if there is one.
    pub next: Option<String>,
    /// Cursor for the previous page, if there is one.
    pub previous: Option<String>,
    pub total: Option<u64>,
}

/// A condition checked inside a transaction before its operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Precondition {
    /// The operation's resource must be at this version (`If-Match`).
    IfMatch(VersionId),
    /// The criteria must match no current resource (a conditional create that found
    /// nothing when it was planned).
    NoMatch(Criteria),
    /// The criteria must match exactly this resource.
    OnlyMatch(Criteria, ResourceId),
}

impl Precondition {
    /// The search this precondition needs and how many matches it must list at most.
    pub fn search(&self) -> Option<(&Criteria, usize)> {
        match self {
            Precondition::IfMatch(_) => None,
            Precondition::NoMatch(c) => Some((c, 1)),
            Precondition::OnlyMatch(c, _) => Some((c, 2)),
        }
    }

    /// Judges the precondition of a write to `target` (none for a bare check) whose
    /// current version is `prev` (version, deleted, lastUpdated), given what its
    /// [`search`](Self::search) found; the same for every backend.
    pub fn check(
        &self,
        target: Option<(&ResourceType, &ResourceId)>,
        prev: Option<(VersionId, bool, i64)>,
        found: &[ResourceId],
    ) -> Result<()> {
        match self {
            Precondition::IfMatch(v) => match target {
                Some((ty, id)) => check_if_match(ty, id, prev.map(|p| (p.0, p.1)), Some(*v)),
                None => Ok(()),
            },
            Precondition::NoMatch(_) if !found.is_empty() => {
                Err(Error::Conflict("A matching resource was created concurrently; retry the request".into()))
            }
            Precondition::OnlyMatch(_, id) if found.len() != 1 || &found[0] != id => Err(Error::Conflict(
                "The resources matching the conditions changed concurrently; retry the request".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// One operation of an all-or-nothing transaction.
#[derive(Debug, Clone)]
pub enum TxOp {
    /// A new version (create or update) of `ty/id`. With [`Method::Post`] the id is a
    /// fresh one the caller made ([`ResourceId::generate`]), which no other writer can
    /// hold; stores may rely on that (PostgreSQL takes no row lock for it).
    Write { ty: ResourceType, id: ResourceId, method: Method, new: Box<NewVersion>, preconditions: Vec<Precondition> },
    /// A deletion of `ty/id` (nothing to do if it is not current).
    Delete { ty: ResourceType, id: ResourceId, preconditions: Vec<Precondition> },
    /// Only the preconditions (a conditional create that matched an existing resource).
    Check { preconditions: Vec<Precondition> },
    /// A record (table `auth_record`) inserted with the resources, or the whole
    /// transaction refused with [`Error::Conflict`] when a live one has its kind and
    /// key: what makes a write happen once (an HL7 v2 message kept with what it wrote).
    Record(AuthRecord),
}

/// What one transaction operation did.
#[derive(Debug, Clone, PartialEq)]
pub enum TxOutcome {
    Written { stored: StoredResource, created: bool },
    Deleted(Option<StoredResource>),
    Checked,
    Recorded,
}

/// `Patient/[id]/$everything` paging and filters.
#[derive(Debug, Clone)]
pub struct EverythingQuery {
    pub since: Option<Instant>,
    /// Only these resource types (`_type`).
    pub types: Option<Vec<String>>,
    pub count: usize,
    pub cursor: Option<String>,
    /// What the caller may see (set by the gate).
    pub restriction: Option<hale_search::access::Restriction>,
}

/// One entry of the audit trail as stored: the AuditEvent (JSON text, without `id`; its
/// id is the entry's sequence number) and the columns the log is searched by.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub recorded: Instant,
    /// The interaction (`read`, `search-type`, `create`, `login` ...).
    pub action: String,
    /// Who acted (`Practitioner/1`, `system:import`, `anonymous`).
    pub agent: String,
    /// `0` success, `4` minor failure, `8` serious failure (AuditEvent.outcome).
    pub outcome: String,
    /// Ids of the patients whose information the interaction touched.
    pub patients: Vec<String>,
    pub body: String,
}

/// The audit entry of a write, completed from the versions the write touched and
/// inserted by the store in the write's own transaction, so a change and its audit
/// record commit together or not at all.
pub struct AuditWrite(Box<AuditFn>);

/// Completes an audit row from the versions a write touched.
type AuditFn = dyn FnOnce(&[&StoredResource]) -> AuditRow + Send;

impl AuditWrite {
    pub fn new(f: impl FnOnce(&[&StoredResource]) -> AuditRow + Send + 'static) -> Self {
        AuditWrite(Box::new(f))
    }
    /// The row for the versions the write touched.
    pub fn row(self, touched: &[&StoredResource]) -> AuditRow {
        (self.0)(touched)
    }
}

impl std::fmt::Debug for AuditWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditWrite")
    }
}

/// A user account as stored: its id, its folded user name (unique) and its JSON
/// document (`hale-identity`'s `Account`: the password hash, never a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: String,
    pub username: String,
    pub body: String,
}

/// How an account is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKey<'a> {
    Id(&'a str),
    Username(&'a str),
}

/// A search of the audit trail, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Entries concerning any of these patients.
    pub patients: Option<Vec<String>>,
    /// With `patients`: only entries that concern no other patient (a patient's own
    /// view of who accessed their record).
    pub only_these_patients: bool,
    /// The agent key (`user:ana`, `client:ops`, `system:import`).
    pub agent: Option<String>,
    /// The subtype (`read`, `search-type`, `login`...).
    pub action: Option<String>,
    /// `0`, `4` or `8`.
    pub outcome: Option<String>,
    /// Recorded at or after (Unix milliseconds).
    pub since: Option<i64>,
    /// Recorded before (Unix milliseconds).
    pub before: Option<i64>,
    /// Entries older than this sequence number (the previous page's last).
    pub below_seq: Option<i64>,
    pub limit: usize,
}

impl AuditQuery {
    /// The statement (for both stores) selecting `seq, body` of the matching entries,
    /// newest first.
    pub fn statement(&self) -> sql::Stmt {
        use sql::Bind;
        let mut conds = Vec::new();
        let mut args = Vec::new();
        if let Some(ps) = &self.patients {
            conds.push(format!(
                "a.seq IN (SELECT p.seq FROM audit_patient p WHERE p.patient IN ({}))",
                vec!["?"; ps.len().max(1)].join(", ")
            ));
            if ps.is_empty() {
                args.push(Bind::Null);
            }
            args.extend(ps.iter().map(|p| Bind::Text(p.clone())));
            if self.only_these_patients {
                conds.push(format!(
                    "NOT EXISTS (SELECT 1 FROM audit_patient o WHERE o.seq = a.seq AND o.patient NOT IN ({}))",
                    vec!["?"; ps.len().max(1)].join(", ")
                ));
                if ps.is_empty() {
                    args.push(Bind::Null);
                }
                args.extend(ps.iter().map(|p| Bind::Text(p.clone())));
            }
        }
        for (col, v) in [("a.agent", &self.agent), ("a.action", &self.action), ("a.outcome", &self.outcome)] {
            if let Some(v) = v {
                conds.push(format!("{col} = ?"));
                args.push(Bind::Text(v.clone()));
            }
        }
        for (cond, v) in
            [("a.recorded >= ?", self.since), ("a.recorded < ?", self.before), ("a.seq < ?", self.below_seq)]
        {
            if let Some(v) = v {
                conds.push(cond.to_string());
                args.push(Bind::Integer(v));
            }
        }
        let filter = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
        sql::Stmt {
            sql: format!("SELECT a.seq, a.body FROM audit_log a{filter} ORDER BY a.seq DESC LIMIT {}", self.limit),
            args,
        }
    }
}

/// A record of the authorization server (a registered client, an authorization code,
/// a refresh token, a sign-in session...): a JSON body under (`kind`, `key`), where the
/// key of anything secret is a hash of the secret, never the secret. Expired records
/// (`expires`, Unix milliseconds) are not returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRecord {
    pub kind: String,
    pub key: String,
    pub body: String,
    pub expires: Option<i64>,
}

/// The hash of a chained audit entry from the previous entry's hash (32 zero bytes for
/// the first), the entry's position in the chain, its sequence number and its body.
pub type ChainLink = fn(prev: &[u8; 32], pos: i64, seq: i64, body: &str) -> [u8; 32];

/// An audit entry with its place in the hash chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedEntry {
    pub pos: i64,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub body: String,
}

/// The versions a transaction's outcomes touched, for its audit row.
pub fn touched(outcomes: &[TxOutcome]) -> Vec<&StoredResource> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            TxOutcome::Written { stored, .. } => Some(stored),
            TxOutcome::Deleted(Some(s)) => Some(s),
            _ => None,
        })
        .collect()
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} is not known")]
    NotFound(String),
    #[error("{0} was deleted")]
    Gone(String),
    #[error("version conflict: expected version {expected}, current is {current}")]
    VersionConflict { expected: VersionId, current: String },
    #[error("the conditions matched {0} resources")]
    MultipleMatches(usize),
    #[error("the resource id {0} does not match the id of the resource matched by the conditions")]
    IdMismatch(String),
    #[error("{0}")]
    BadCursor(String),
    #[error("{0}")]
    Conflict(String),
    #[error("storage failure: {0}")]
    Backend(String),
    /// A statement ran longer than `limits.statement_timeout_ms` and was stopped.
    #[error("the query ran longer than the server allows and was stopped; narrow it")]
    Timeout,
}

impl Error {
    pub fn category(&self) -> Category {
        match self {
            Error::NotFound(_) => Category::NotFound,
            Error::Gone(_) => Category::Gone,
            Error::VersionConflict { .. } | Error::MultipleMatches(_) => Category::PreconditionFailed,
            Error::IdMismatch(_) | Error::BadCursor(_) => Category::Invalid,
            Error::Conflict(_) => Category::Conflict,
            Error::Backend(_) => Category::Internal,
            Error::Timeout => Category::TooCostly,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The version a store writes after `prev` (the current version, whether it is deleted,
/// its lastUpdated in milliseconds) of `id`: its number, its lastUpdated (never before the
/// previous one's, even if the clock went back), the body stamped with both (`None` for a
/// deletion, when `new` is `None`), the index rows that go with it and the content kept
/// apart from it (never empty).
pub fn next_version(
    id: &ResourceId,
    prev: Option<(VersionId, bool, i64)>,
    new: Option<NewVersion>,
) -> (VersionId, Instant, Option<String>, IndexRows, Option<Content>) {
    let version = prev.map(|p| p.0.next()).unwrap_or(VersionId::FIRST);
    let at = Instant::from_millis(Instant::now().millis().max(prev.map(|p| p.2).unwrap_or(i64::MIN)));
    match new {
        Some(mut n) => {
            stamp(&mut n.resource, id, version, at);
            let content = n.content.filter(|c| !c.is_empty());
            (version, at, Some(hale_fhir::json::to_string(&n.resource)), n.index, content)
        }
        None => (version, at, None, IndexRows::default(), None),
    }
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated` on a resource; shared by the
/// backends so both write the same bytes.
pub fn stamp(resource: &mut Value, id: &ResourceId, version: VersionId, at: Instant) {
    if let Some(obj) = resource.as_object_mut() {
        // keep resourceType first and id second, as the examples in the spec do
        let rt = obj.shift_remove("resourceType");
        obj.shift_remove("id");
        let mut meta = obj.shift_remove("meta").unwrap_or_else(|| Value::Object(Default::default()));
        if let Some(m) = meta.as_object_mut() {
            m.insert("versionId".into(), Value::String(version.to_string()));
            m.insert("lastUpdated".into(), Value::String(at.to_fhir()));
        }
        let mut out = serde_json::Map::with_capacity(obj.len() + 3);
        if let Some(rt) = rt {
            out.insert("resourceType".into(), rt);
        }
        out.insert("id".into(), Value::String(id.to_string()));
        out.insert("meta".into(), meta);
        for (k, v) in std::mem::take(obj) {
            out.insert(k, v);
        }
        *obj = out;
    }
}

/// `If-Match` against the current version of a resource (`prev`: its version and whether
/// it is deleted; `None` if it never existed), the same for every backend.
pub fn check_if_match(
    ty: &ResourceType,
    id: &ResourceId,
    prev: Option<(VersionId, bool)>,
    if_match: Option<VersionId>,
) -> Result<()> {
    if let Some(expected) = if_match {
        match prev {
            Some((v, false)) if v == expected => {}
            Some((v, deleted)) => {
                return Err(Error::VersionConflict {
                    expected,
                    current: if deleted { format!("{v} (deleted)") } else { v.to_string() },
                });
            }
            None => return Err(Error::NotFound(format!("{ty}/{id}"))),
        }
    }
    Ok(())
}

/// The storage contract.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The newest version of a resource (a tombstone if it was deleted).
    async fn read(&self, ty: &ResourceType, id: &ResourceId) -> Result<Option<StoredResource>>;
    /// One version of a resource.
    async fn vread(&self, ty: &ResourceType, id: &ResourceId, version: VersionId) -> Result<Option<StoredResource>>;
    /// Creates a resource with a new id; with `if_none_exist`, returns the single
    /// match instead (more than one match is an error).
    async fn create(
        &self,
        ty: &ResourceType,
        new: NewVersion,
        if_none_exist: Option<Criteria>,
        audit: AuditWrite,
    ) -> Result<CreateOutcome>;
    /// Writes a new version of `id` (creating it if absent); `if_match` must equal the
    /// current version.
    async fn update(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        new: NewVersion,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<UpdateOutcome>;
    /// Conditional update: no match creates (with `id` if given), one match updates,
    /// more are an error.
    async fn conditional_update(
        &self,
        criteria: Criteria,
        id: Option<ResourceId>,
        new: NewVersion,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<UpdateOutcome>;
    /// Writes a deletion; `None` when there was nothing current to delete.
    async fn delete(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<Option<StoredResource>>;
    /// Conditional delete of the single match (none: `None`; more: error).
    async fn conditional_delete(&self, criteria: Criteria, audit: AuditWrite) -> Result<Option<StoredResource>>;
    /// Ids of current resources matching the criteria (at most `limit`).
    async fn find(&self, criteria: &Criteria, limit: usize) -> Result<Vec<ResourceId>>;
    /// Replaces the index rows of current resources (for `hale reindex`), in one
    /// transaction; resources that are no longer current are skipped.
    async fn replace_index(&self, items: Vec<(ResourceType, ResourceId, VersionId, IndexRows)>) -> Result<usize>;
    /// Runs every operation in one transaction, in order: all or nothing. On failure,
    /// the index of the operation that failed and why.
    /// `audit` is completed from the outcomes and committed with them.
    async fn transaction(
        &self,
        ops: Vec<TxOp>,
        audit: AuditWrite,
    ) -> std::result::Result<Vec<TxOutcome>, (usize, Error)>;
    /// A page of a type search. `want_total` asks for the number of matches.
    async fn search(&self, request: &SearchRequest, page_size: usize, want_total: bool) -> Result<SearchPage>;
    /// The patient's compartment and the resources those reference (practitioners,
    /// organizations, medications...), ordered by type and id.
    async fn everything(&self, patient: &ResourceId, query: &EverythingQuery) -> Result<SearchPage>;
    /// The length of the content of version `version` of Binary `id` kept apart from
    /// its JSON ([`NewVersion::content`]); `None` when it has none (its content, if
    /// any, is its JSON's `data`).
    async fn content_len(&self, id: &ResourceId, version: VersionId) -> Result<Option<u64>>;
    /// The part of that content holding byte `offset`: the part's own offset and its
    /// bytes (at most [`CONTENT_PART`]); `None` past the end.
    async fn content_part(&self, id: &ResourceId, version: VersionId, offset: u64) -> Result<Option<(u64, Vec<u8>)>>;
    /// History, newest first.
    async fn history(&self, scope: &HistoryScope, query: &HistoryQuery) -> Result<HistoryPage>;
    /// A cheap check that the store answers (for readiness).
    async fn ping(&self) -> Result<()>;
    /// Refreshes the planner's statistics after a bulk load (`ANALYZE`), so searches
    /// keep good plans.
    async fn optimize(&self) -> Result<()>;
    /// Up to `limit` versions of any resource written after position `after`, oldest
    /// first, each with its position (for copying a store: start at 0).
    async fn versions_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>>;
    /// Writes versions exactly as given (id, version, lastUpdated, method, body), in order,
    /// in one transaction: the last version of a resource becomes its current one, with
    /// the index rows given (ignored for deletions) and a Binary's content kept apart
    /// from its JSON. For copying into an unused store.
    async fn restore(&self, versions: Vec<(StoredResource, IndexRows, Option<Content>)>) -> Result<()>;

    /// Appends audit entries (of reads, refusals, sign-ins), answered once they are
    /// written so that a crash of Hale cannot lose them: committed (PostgreSQL), or
    /// appended to a journal that the store moves into the log before it chains,
    /// searches or counts entries, and when it opens (SQLite).
    async fn append_audit(&self, rows: Vec<AuditRow>) -> Result<()>;
    /// Links up to `limit` entries not yet in the hash chain into it, oldest first, with
    /// `link`; one chainer at a time (others wait or return 0). Returns how many it
    /// linked and the chain's head (position and hash) afterwards.
    async fn chain_audit(&self, limit: usize, link: ChainLink) -> Result<(usize, Option<(i64, Vec<u8>)>)>;
    /// Chained entries after position `after`, in chain order.
    async fn audit_chain(&self, after: i64, limit: usize) -> Result<Vec<ChainedEntry>>;
    /// How many entries wait to be chained.
    async fn audit_unchained(&self) -> Result<u64>;
    /// Audit entries matching the query, newest first: `(seq, AuditEvent JSON)`.
    async fn audit_search(&self, query: &AuditQuery) -> Result<Vec<(i64, String)>>;

    /// Creates an account (`create`: [`Error::Conflict`] when its id or user name is
    /// taken) or replaces one (`Conflict` when it does not exist, or the new user name
    /// is another's), with the audit entry of the change in the same transaction.
    async fn put_account(&self, account: AccountRow, create: bool, audit: AuditRow) -> Result<()>;
    async fn account(&self, key: AccountKey<'_>) -> Result<Option<AccountRow>>;
    /// Every account, by user name.
    async fn accounts(&self) -> Result<Vec<AccountRow>>;

    /// Writes (inserting or replacing) an authorization record, with an audit entry in
    /// the same transaction when given; removes expired records of its kind.
    async fn put_auth(&self, record: AuthRecord, audit: Option<AuditRow>) -> Result<()>;
    /// Inserts the record unless a live one of the same kind and key exists: `false`
    /// then, and nothing changes. Of two callers at most one gets `true` (a client
    /// assertion's `jti`, used once).
    async fn claim_auth(&self, record: AuthRecord) -> Result<bool>;
    /// The record, unless missing or expired.
    async fn auth(&self, kind: &str, key: &str) -> Result<Option<AuthRecord>>;
    /// Removes the record and returns it, atomically: of two callers at most one gets
    /// it (single-use authorization codes, rotated refresh tokens).
    async fn take_auth(&self, kind: &str, key: &str) -> Result<Option<AuthRecord>>;
    /// Every live record of `kind`, by key.
    async fn auths(&self, kind: &str) -> Result<Vec<AuthRecord>>;
    /// How many live records of `kind` have a key starting with `key_prefix` (failed
    /// sign-ins of one account, counted by every node).
    async fn count_auths(&self, kind: &str, key_prefix: &str) -> Result<u64>;
    /// Removes the records of `kind` whose key starts with `key_prefix`; how many.
    async fn remove_auths(&self, kind: &str, key_prefix: &str) -> Result<u64>;

    /// The key material stored under `name` (table `server_key`: what every node of one
    /// database shares, such as the token signing key), storing `candidate` first when
    /// there is none. Of several callers, at once or not, every one gets the same body.
    /// Never replaced nor deleted.
    async fn server_key(&self, name: &str, candidate: String) -> Result<String>;
    /// Appends a signed audit checkpoint (a line of the checkpoint file) to the shared,
    /// append-only table `audit_checkpoint`.
    async fn append_checkpoint(&self, line: String) -> Result<()>;
    /// Every checkpoint line appended, oldest first.
    async fn checkpoints(&self) -> Result<Vec<String>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamping_puts_id_and_meta_first() {
        let mut v = json!({"name":[{"family":"x"}],"resourceType":"Patient","id":"old","meta":{"tag":[{"code":"t"}]}});
        stamp(&mut v, &ResourceId::parse("p1").unwrap(), VersionId::new(2), Instant::from_millis(0));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"resourceType":"Patient","id":"p1","meta":{"tag":[{"code":"t"}],"versionId":"2","lastUpdated":"1970-01-01T00:00:00.000Z"},"name":[{"family":"x"}]}"#
        );
    }

    #[test]
    fn instants_parse_and_print() {
        let i = Instant::parse("2020-01-02T03:04:05.678Z").unwrap();
        assert_eq!(i.to_fhir(), "2020-01-02T03:04:05.678Z");
        assert_eq!(Instant::parse("2020-01-02").unwrap().to_fhir(), "2020-01-02T00:00:00.000Z");
        assert_eq!(Instant::parse("2020-01-02T05:04:05+02:00").unwrap().to_fhir(), "2020-01-02T03:04:05.000Z");
        assert!(Instant::parse("yesterday").is_none());
        assert_eq!(Instant::from_millis(0).to_http_date(), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}

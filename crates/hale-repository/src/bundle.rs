//! Batch and transaction bundles (<https://hl7.org/fhir/R4/http.html#transaction>).
//!
//! A transaction is planned first (ids assigned, conditional matches looked up,
//! `urn:uuid:`/`urn:oid:` full URLs and conditional references resolved in every
//! `reference` of every resource, each resource validated and indexed), then written as
//! one store transaction in which the planned matches are checked again, so a race
//! fails the transaction instead of writing a duplicate. Processing order is DELETE,
//! POST, PUT, then GET. A batch runs each entry on its own.

use std::collections::HashMap;

use hale_access::Interaction;
use hale_audit::Event;
use hale_fhir::{Issue, IssueType, ResourceId, ResourceType, VersionId};
use hale_store::{AuthRecord, Instant, Method, Precondition, StoredResource, TxOp, TxOutcome};
use serde_json::Value;

use crate::{Error, Repository, Result, check_body, prepare, resource_id, resource_type, version_id};

/// Which kind of bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Transaction,
    Batch,
}

/// How an entry succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStatus {
    Created,
    Ok,
    NoContent,
}

/// The answer to one entry (`Bundle.entry.response`, and the resource).
#[derive(Debug, Clone)]
pub struct EntryResponse {
    pub status: EntryStatus,
    /// `Type/id/_history/n`
    pub location: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<Instant>,
    /// The resource as stored (writes and reads).
    pub resource: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verb {
    Delete,
    Post,
    Put,
    Patch,
    Get,
}

impl Verb {
    /// Processing order: DELETE, POST, PUT and PATCH, then GET.
    fn rank(self) -> u8 {
        match self {
            Verb::Delete => 0,
            Verb::Post => 1,
            Verb::Put | Verb::Patch => 2,
            Verb::Get => 3,
        }
    }
}

#[derive(Debug, Clone)]
enum Target {
    Type(ResourceType),
    Instance(ResourceType, ResourceId),
    Version(ResourceType, ResourceId, VersionId),
    Conditional(ResourceType, String),
}

/// (entry index, verb, target, preconditions, whether it writes)
type Planned = (usize, Verb, Option<(ResourceType, ResourceId)>, Vec<Precondition>, bool);

#[derive(Debug, Clone)]
struct EntryReq {
    index: usize,
    full_url: Option<String>,
    verb: Verb,
    target: Target,
    if_match: Option<VersionId>,
    if_none_exist: Option<String>,
    resource: Option<Value>,
}

fn at(index: usize, what: &str) -> String {
    format!("Bundle.entry[{index}]{what}")
}

fn invalid(index: usize, what: &str, msg: impl Into<String>) -> Error {
    Error::invalid(Issue::error(IssueType::Invalid, msg.into()).at(at(index, what)))
}

/// Names the entry in every issue of an error.
pub(crate) fn in_entry(index: usize, e: Error) -> Error {
    match e {
        Error::Invalid(mut o) => {
            for i in &mut o.issues {
                i.expression = Some(match i.expression.take() {
                    // Patient.birthDate -> Bundle.entry[3].resource.birthDate
                    Some(x) if x.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => {
                        let rest = x.split_once('.').map(|(_, r)| format!(".{r}")).unwrap_or_default();
                        at(index, &format!(".resource{rest}"))
                    }
                    Some(x) => format!("{} ({x})", at(index, "")),
                    None => at(index, ""),
                });
            }
            Error::Invalid(o)
        }
        other => Error::Entry { index, source: Box::new(other) },
    }
}

fn parse_entry(index: usize, mut e: Value) -> Result<EntryReq> {
    // moved out, not copied: a bundle's resources are most of its size
    let resource = e.get_mut("resource").map(Value::take);
    let full_url = e.get("fullUrl").and_then(Value::as_str).map(str::to_string);
    let req = e.get("request").ok_or_else(|| invalid(index, ".request", "Each entry needs a request"))?;
    let method = req.get("method").and_then(Value::as_str).unwrap_or("");
    let verb = match method {
        "DELETE" => Verb::Delete,
        "POST" => Verb::Post,
        "PUT" => Verb::Put,
        "GET" | "HEAD" => Verb::Get,
        "PATCH" => Verb::Patch,
        _ => {
            return Err(invalid(index, ".request.method", "request.method must be GET, POST, PUT, PATCH or DELETE"));
        }
    };
    let url = req
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(index, ".request.url", "request.url is required"))?;
    let url = url.trim_start_matches('/');
    let bad_url = || {
        invalid(
            index,
            ".request.url",
            format!("'{}' is not a URL this server can process", url.chars().take(80).collect::<String>()),
        )
    };
    let target = if let Some((path, query)) = url.split_once('?') {
        Target::Conditional(resource_type(path).map_err(|_| bad_url())?, query.to_string())
    } else {
        let parts: Vec<&str> = url.split('/').collect();
        match parts.as_slice() {
            [t] => Target::Type(resource_type(t).map_err(|_| bad_url())?),
            [t, id] => {
                Target::Instance(resource_type(t).map_err(|_| bad_url())?, resource_id(id).map_err(|_| bad_url())?)
            }
            [t, id, "_history", v] => Target::Version(
                resource_type(t).map_err(|_| bad_url())?,
                resource_id(id).map_err(|_| bad_url())?,
                version_id(v).map_err(|_| bad_url())?,
            ),
            _ => return Err(bad_url()),
        }
    };
    let if_match = match req.get("ifMatch").and_then(Value::as_str) {
        None => None,
        Some(s) => {
            let inner = s.trim().trim_start_matches("W/").trim_matches('"');
            Some(
                VersionId::parse(inner)
                    .ok_or_else(|| invalid(index, ".request.ifMatch", "ifMatch must be an ETag such as W/\"3\""))?,
            )
        }
    };
    let if_none_exist = req.get("ifNoneExist").and_then(Value::as_str).map(|s| {
        let s = s.trim_start_matches('?');
        s.split_once('?').map(|(_, q)| q).unwrap_or(s).to_string()
    });
    if matches!(verb, Verb::Post | Verb::Put | Verb::Patch) && resource.is_none() {
        return Err(invalid(index, ".resource", format!("A {method} entry needs a resource")));
    }
    let resource = match (verb, resource) {
        (Verb::Patch, Some(r)) => Some(patch_document(index, &r)?),
        (_, r) => r,
    };
    match (&verb, &target) {
        (Verb::Post, Target::Type(_))
        | (Verb::Put | Verb::Patch, Target::Instance(..) | Target::Conditional(..))
        | (Verb::Delete, Target::Instance(..) | Target::Conditional(..))
        | (Verb::Get, Target::Instance(..) | Target::Version(..)) => {}
        (Verb::Get, _) => return Err(invalid(index, ".request.url", "GET entries may read a resource or a version")),
        _ => return Err(bad_url()),
    }
    Ok(EntryReq { index, full_url, verb, target, if_match, if_none_exist, resource })
}

/// The patch a PATCH entry carries: a Binary with content type
/// `application/json-patch+json` (base64 data) holding a JSON Patch, or a `Parameters`
/// resource (a FHIRPath Patch).
fn patch_document(index: usize, r: &Value) -> Result<Value> {
    use base64::Engine as _;
    match r.get("resourceType").and_then(Value::as_str) {
        Some("Binary") => {}
        Some("Parameters") => return Ok(r.clone()),
        _ => return Err(invalid(index, ".resource", "A PATCH entry carries a Binary holding a JSON Patch document")),
    }
    let content_type = r.get("contentType").and_then(Value::as_str).unwrap_or("");
    if !content_type.starts_with("application/json-patch+json") {
        return Err(invalid(
            index,
            ".resource.contentType",
            "The Binary's contentType must be application/json-patch+json",
        ));
    }
    let data = r.get("data").and_then(Value::as_str).unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| invalid(index, ".resource.data", "The Binary's data is not base64"))?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|_| invalid(index, ".resource.data", "The Binary's data is not a JSON Patch document"))?;
    if !doc.is_array() {
        return Err(invalid(index, ".resource.data", "A JSON Patch document is an array of operations"));
    }
    Ok(doc)
}

/// Replaces every `reference` found in `map` (full URLs and conditional references),
/// and every `url` that is one of the bundle's full URLs (an Attachment naming a Binary
/// of the same transaction: R4 http, "transaction processing rules" replace matching
/// links in elements of type url too).
pub fn rewrite_references(v: &mut Value, map: &HashMap<String, String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                if (k == "reference" || k == "url")
                    && let Value::String(s) = child
                    && let Some(new) = map.get(s.as_str())
                {
                    *s = new.clone();
                } else {
                    rewrite_references(child, map);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_references(x, map)),
        _ => {}
    }
}

/// Every `reference` value of the shape `Type?query` (a conditional reference).
fn conditional_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                if k == "reference"
                    && let Value::String(s) = child
                    && let Some((head, _)) = s.split_once('?')
                    && !head.contains(':')
                {
                    out.push(s.clone());
                } else {
                    conditional_references(child, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| conditional_references(x, out)),
        _ => {}
    }
}

fn response_for(stored: &StoredResource, status: EntryStatus) -> EntryResponse {
    EntryResponse {
        status,
        location: Some(format!("{}/{}/_history/{}", stored.resource_type, stored.id, stored.version)),
        etag: Some(format!("W/\"{}\"", stored.version)),
        last_modified: Some(stored.last_updated),
        resource: stored.body.clone(),
    }
}

impl Repository {
    /// Processes a batch or transaction bundle. A transaction answers all entries or
    /// fails whole; a batch answers each entry with its own result.
    pub async fn process_bundle(&self, bundle: Value) -> Result<(BundleKind, Vec<Result<EntryResponse>>)> {
        self.process_bundle_with(bundle, None).await
    }

    async fn process_bundle_with(
        &self,
        mut bundle: Value,
        record: Option<AuthRecord>,
    ) -> Result<(BundleKind, Vec<Result<EntryResponse>>)> {
        let kind = match bundle.get("type").and_then(Value::as_str) {
            Some("transaction") => BundleKind::Transaction,
            Some("batch") => BundleKind::Batch,
            _ => {
                return Err(Error::invalid(
                    Issue::error(IssueType::Invalid, "Only bundles of type transaction or batch can be processed")
                        .at("Bundle.type"),
                ));
            }
        };
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(Error::invalid(Issue::error(IssueType::Invalid, "The body must be a Bundle").at("Bundle")));
        }
        // a transaction's fullUrls agree with the resources they name (a batch's entries
        // stand alone, so each is answered by its own rules)
        if kind == BundleKind::Transaction
            && let Some(obj) = bundle.as_object()
            && let issues = hale_fhir::bundle::check(obj, "Bundle")
            && !issues.is_empty()
        {
            return Err(Error::Invalid(hale_fhir::OperationOutcome::new(issues)));
        }
        let entries = match bundle.get_mut("entry") {
            None => Vec::new(),
            Some(Value::Array(a)) => std::mem::take(a),
            Some(_) => {
                return Err(Error::invalid(
                    Issue::error(IssueType::Structure, "entry must be an array").at("Bundle.entry"),
                ));
            }
        };
        match kind {
            BundleKind::Transaction => {
                let parsed =
                    entries.into_iter().enumerate().map(|(i, e)| parse_entry(i, e)).collect::<Result<Vec<_>>>()?;
                Ok((kind, self.transaction("transaction", parsed, record).await?.into_iter().map(Ok).collect()))
            }
            BundleKind::Batch => {
                let mut out = Vec::with_capacity(entries.len());
                for (i, e) in entries.into_iter().enumerate() {
                    let result = match parse_entry(i, e) {
                        Ok(req) => self.transaction("batch", vec![req], None).await.map(|mut r| r.remove(0)),
                        Err(err) => Err(err),
                    };
                    out.push(result);
                }
                Ok((kind, out))
            }
        }
    }

    async fn find_unique(
        &self,
        index: usize,
        ty: &ResourceType,
        query: &str,
    ) -> Result<(hale_store::Criteria, Option<ResourceId>)> {
        let criteria = self.criteria(ty, query, None).map_err(|e| in_entry(index, e))?;
        let found = self.door(Interaction::Search, Some(ty)).await?.find(&criteria, 2).await?;
        match found.len() {
            0 => Ok((criteria, None)),
            1 => Ok((criteria, found.into_iter().next())),
            n => Err(in_entry(index, Error::Store(hale_store::Error::MultipleMatches(n)))),
        }
    }

    /// A transaction (or one batch entry, `subtype` "batch"): one audited interaction
    /// listing every resource it wrote; its reads are audited as reads.
    async fn transaction(
        &self,
        subtype: &str,
        entries: Vec<EntryReq>,
        record: Option<AuthRecord>,
    ) -> Result<Vec<EntryResponse>> {
        let event = Event::new(subtype, Interaction::Update);
        let result = self.transaction_inner(&event, entries, record).await;
        self.audit_failed_write(event, result).await
    }

    /// Processes a transaction bundle and inserts `(kind, key, body)` into the
    /// authorization records in the same store transaction: all of it commits, or none.
    /// When a live record already has that kind and key, nothing is written and the
    /// answer is a conflict (`Error::Store(Conflict)`): what makes a received message
    /// write once however often it is sent (Hale's own system jobs only).
    pub async fn process_transaction_recorded(
        &self,
        bundle: Value,
        kind: &str,
        key: &str,
        body: &Value,
    ) -> Result<Vec<EntryResponse>> {
        if bundle.get("type").and_then(Value::as_str) != Some("transaction") {
            return Err(Error::invalid(
                Issue::error(IssueType::Invalid, "Only a transaction can be recorded").at("Bundle.type"),
            ));
        }
        let record = AuthRecord { kind: kind.into(), key: key.into(), body: body.to_string(), expires: None };
        let (_, answers) = self.process_bundle_with(bundle, Some(record)).await?;
        answers.into_iter().collect()
    }

    async fn transaction_inner(
        &self,
        event: &Event,
        mut entries: Vec<EntryReq>,
        record: Option<AuthRecord>,
    ) -> Result<Vec<EntryResponse>> {
        let n = entries.len();
        let position: HashMap<usize, usize> = entries.iter().enumerate().map(|(p, e)| (e.index, p)).collect();
        // 1. plan: ids, conditional matches, the full URL map
        let mut map: HashMap<String, String> = HashMap::new();
        let mut planned: Vec<Planned> = Vec::new();
        let mut targets_seen: HashMap<String, usize> = HashMap::new();
        let mut post_matches: HashMap<usize, (ResourceType, ResourceId)> = HashMap::new();
        let mut patched: HashMap<usize, Value> = HashMap::new();
        for e in &entries {
            let (target, pre, write) = match (&e.verb, &e.target) {
                (Verb::Post, Target::Type(ty)) => match &e.if_none_exist {
                    Some(q) => match self.find_unique(e.index, ty, q).await? {
                        (c, None) => (Some((ty.clone(), ResourceId::generate())), vec![Precondition::NoMatch(c)], true),
                        (c, Some(id)) => (Some((ty.clone(), id.clone())), vec![Precondition::OnlyMatch(c, id)], false),
                    },
                    None => (Some((ty.clone(), ResourceId::generate())), Vec::new(), true),
                },
                (Verb::Put, Target::Instance(ty, id)) => {
                    (Some((ty.clone(), id.clone())), e.if_match.map(Precondition::IfMatch).into_iter().collect(), true)
                }
                (Verb::Put, Target::Conditional(ty, q)) => {
                    let body_id =
                        e.resource.as_ref().and_then(|r| r.get("id")).and_then(Value::as_str).map(str::to_string);
                    let mut pre: Vec<Precondition> = e.if_match.map(Precondition::IfMatch).into_iter().collect();
                    let id = match self.find_unique(e.index, ty, q).await? {
                        (c, None) => {
                            pre.push(Precondition::NoMatch(c));
                            match body_id {
                                Some(b) => resource_id(&b).map_err(|err| in_entry(e.index, err))?,
                                None => ResourceId::generate(),
                            }
                        }
                        (c, Some(id)) => {
                            if body_id.is_some_and(|b| b != id.as_str()) {
                                return Err(invalid(
                                    e.index,
                                    ".resource.id",
                                    "The id does not match the resource the conditions select",
                                ));
                            }
                            pre.push(Precondition::OnlyMatch(c, id.clone()));
                            id
                        }
                    };
                    (Some((ty.clone(), id)), pre, true)
                }
                (Verb::Patch, Target::Instance(..) | Target::Conditional(..)) => {
                    let (ty, id, mut pre) = match &e.target {
                        Target::Instance(ty, id) => (ty.clone(), id.clone(), Vec::new()),
                        Target::Conditional(ty, q) => match self.find_unique(e.index, ty, q).await? {
                            (c, Some(id)) => (ty.clone(), id.clone(), vec![Precondition::OnlyMatch(c, id)]),
                            (_, None) => {
                                return Err(in_entry(
                                    e.index,
                                    Error::NotFound(format!("{ty}?{q} matches nothing to patch")),
                                ));
                            }
                        },
                        _ => return Err(invalid(e.index, ".request.url", "PATCH takes Type/id or Type?query")),
                    };
                    let current = self.read(&ty, &id).await.map_err(|err| in_entry(e.index, err))?;
                    if let Some(v) = e.if_match
                        && v != current.version
                    {
                        return Err(in_entry(
                            e.index,
                            Error::Store(hale_store::Error::VersionConflict {
                                expected: v,
                                current: current.version.to_string(),
                            }),
                        ));
                    }
                    let doc = e.resource.as_ref().unwrap_or(&Value::Null);
                    let result = if doc.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
                        let body: Value = serde_json::from_str(current.body.as_deref().unwrap_or("{}"))
                            .map_err(|err| Error::Store(hale_store::Error::Backend(err.to_string())))?;
                        crate::fhirpath_patch::apply(&body, doc)
                    } else {
                        crate::apply_json_patch(&current, doc)
                    }
                    .map_err(|err| in_entry(e.index, err))?;
                    patched.insert(e.index, result);
                    // written only if nothing changed the resource since it was read
                    pre.push(Precondition::IfMatch(current.version));
                    (Some((ty, id)), pre, true)
                }
                (Verb::Delete, Target::Instance(ty, id)) => {
                    (Some((ty.clone(), id.clone())), e.if_match.map(Precondition::IfMatch).into_iter().collect(), true)
                }
                (Verb::Delete, Target::Conditional(ty, q)) => match self.find_unique(e.index, ty, q).await? {
                    (c, None) => (None, vec![Precondition::NoMatch(c)], false),
                    (c, Some(id)) => (Some((ty.clone(), id.clone())), vec![Precondition::OnlyMatch(c, id)], true),
                },
                _ => (None, Vec::new(), false),
            };
            if let Some((ty, id)) = &target {
                let key = format!("{ty}/{id}");
                if write
                    && e.verb != Verb::Get
                    && let Some(other) = targets_seen.insert(key.clone(), e.index)
                {
                    return Err(invalid(e.index, "", format!("{key} is also the target of Bundle.entry[{other}]")));
                }
                if let Some(full) = &e.full_url
                    && matches!(e.verb, Verb::Post | Verb::Put)
                {
                    map.insert(full.clone(), key);
                }
            }
            if e.verb == Verb::Post
                && !write
                && let Some(t) = &target
            {
                post_matches.insert(e.index, t.clone());
            }
            planned.push((e.index, e.verb, target, pre, write));
        }
        // 2. conditional references
        for e in &entries {
            let mut refs = Vec::new();
            if let Some(r) = &e.resource {
                conditional_references(r, &mut refs);
            }
            for r in refs {
                if map.contains_key(&r) {
                    continue;
                }
                let (t, q) = r.split_once('?').unwrap_or((&r, ""));
                let ty = resource_type(t).map_err(|_| {
                    invalid(e.index, ".resource", format!("'{r}' is not a valid conditional reference"))
                })?;
                match self.find_unique(e.index, &ty, q).await? {
                    (_, Some(id)) => {
                        map.insert(r.clone(), format!("{ty}/{id}"));
                    }
                    (_, None) => {
                        return Err(Error::Entry {
                            index: e.index,
                            source: Box::new(Error::NotFound(format!("the conditional reference {r} matches nothing"))),
                        });
                    }
                }
            }
        }
        // 3. rewrite, validate and index; build operations in processing order
        let mut ops: Vec<(Verb, usize, TxOp)> = Vec::new();
        for (e, (index, verb, target, pre, write)) in entries.iter_mut().zip(planned) {
            let op = match (verb, target, write) {
                (Verb::Get, _, _) => continue,
                (Verb::Delete, Some((ty, id)), true) => TxOp::Delete { ty, id, preconditions: pre },
                (_, Some((ty, id)), true) => {
                    let mut resource = match patched.remove(&index) {
                        Some(p) => p,
                        None => e.resource.take().unwrap_or(Value::Null),
                    };
                    rewrite_references(&mut resource, &map);
                    if (verb == Verb::Post || matches!(e.target, Target::Conditional(..)))
                        && let Some(o) = resource.as_object_mut()
                    {
                        o.insert("id".into(), Value::String(id.to_string()));
                    }
                    check_body(&ty, Some(&id), &resource).map_err(|err| in_entry(index, err))?;
                    let method = if verb == Verb::Post { Method::Post } else { Method::Put };
                    TxOp::Write {
                        ty: ty.clone(),
                        id,
                        method,
                        new: Box::new(prepare(resource, self)),
                        preconditions: pre,
                    }
                }
                (_, _, _) => TxOp::Check { preconditions: pre },
            };
            ops.push((verb, index, op));
        }
        ops.sort_by_key(|(verb, index, _)| (verb.rank(), *index));
        let order: Vec<(Verb, usize)> = ops.iter().map(|(v, i, _)| (*v, *i)).collect();
        let mut ops: Vec<TxOp> = ops.into_iter().map(|(_, _, op)| op).collect();
        ops.extend(record.map(TxOp::Record));
        let audit = self.audit_write(event.clone());
        let outcomes = self.door_transaction(&ops).await?.transaction(ops, audit).await.map_err(|(i, err)| {
            match order.get(i) {
                Some(o) => in_entry(o.1, Error::Store(err)),
                // the record kept with the transaction
                None => Error::Store(err),
            }
        })?;
        // 4. answers, in the order of the request
        let mut answers: Vec<Option<EntryResponse>> = vec![None; n];
        for ((verb, index), outcome) in order.into_iter().zip(outcomes) {
            let pos = position.get(&index).copied().unwrap_or(0);
            answers[pos] = Some(match outcome {
                TxOutcome::Written { stored, created } => {
                    response_for(&stored, if created { EntryStatus::Created } else { EntryStatus::Ok })
                }
                TxOutcome::Deleted(_) => EntryResponse {
                    status: EntryStatus::NoContent,
                    location: None,
                    etag: None,
                    last_modified: None,
                    resource: None,
                },
                TxOutcome::Checked if verb == Verb::Post => {
                    // a conditional create that matched: answer with the existing resource
                    let existing = match post_matches.get(&index) {
                        Some((ty, id)) => match self.read(ty, id).await {
                            Ok(s) => Some(s),
                            Err(Error::NotFound(_) | Error::Gone(..)) => None,
                            Err(e) => return Err(e),
                        },
                        None => None,
                    };
                    match existing {
                        Some(s) => response_for(&s, EntryStatus::Ok),
                        None => EntryResponse {
                            status: EntryStatus::Ok,
                            location: None,
                            etag: None,
                            last_modified: None,
                            resource: None,
                        },
                    }
                }
                TxOutcome::Checked | TxOutcome::Recorded => EntryResponse {
                    status: EntryStatus::NoContent,
                    location: None,
                    etag: None,
                    last_modified: None,
                    resource: None,
                },
            });
        }
        // 5. reads
        for (pos, e) in entries.iter().enumerate() {
            if e.verb != Verb::Get {
                continue;
            }
            let stored = match &e.target {
                Target::Instance(ty, id) => self.read(ty, id).await,
                Target::Version(ty, id, v) => self.vread(ty, id, *v).await,
                _ => continue,
            }
            .map_err(|err| in_entry(e.index, err))?;
            answers[pos] = Some(response_for(&stored, EntryStatus::Ok));
        }
        Ok(answers
            .into_iter()
            .map(|a| {
                a.unwrap_or(EntryResponse {
                    status: EntryStatus::Ok,
                    location: None,
                    etag: None,
                    last_modified: None,
                    resource: None,
                })
            })
            .collect())
    }
}

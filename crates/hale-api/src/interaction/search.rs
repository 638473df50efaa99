//! search: <https://hl7.org/fhir/R4/http.html#search> (GET, and POST `_search` with a
//! form body). Parameters resolve against the R4 definitions. A type search ignores
//! unsupported ones (R4, search, "handling errors"): they are left out of the `self` link
//! and named in an OperationOutcome entry (`search.mode = outcome`); `Prefer:
//! handling=strict` (or the operator's `strict_search`) makes them a 400. A system
//! search across types ignores them only under `Prefer: handling=lenient` (a parameter
//! one type supports and another does not would otherwise match everything of the other).

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use hale_fhir::{Category, Issue, IssueType};
use hale_repository::Instant;
use hale_search::parse::{Summary, Total};
use serde_json::{Value, json};

use crate::negotiate::Ctx;
use crate::query::Params;
use crate::{ApiError, ApiState, Call};

/// Percent-encodes a query value for a link (keeping `: / , $` readable).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'/' | b',' | b'$' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn link(ctx: &Ctx, path: &str, pairs: &[(String, String)]) -> String {
    let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    if path.is_empty() {
        format!("{}?{}", ctx.base, q.join("&"))
    } else {
        format!("{}/{path}?{}", ctx.base, q.join("&"))
    }
}

/// A searchset's JSON text: `bundle` (without entries) with an entry for each stored
/// resource, whose stored text is spliced in as it is (it is the resource as served).
pub(crate) fn splice<'a>(
    bundle: &Value,
    base: &str,
    entries: impl Iterator<Item = (&'a hale_repository::StoredResource, &'static str)>,
) -> String {
    let head = hale_fhir::json::to_string(bundle);
    let mut text = String::with_capacity(head.len() + 4096);
    text.push_str(head.strip_suffix('}').unwrap_or(&head));
    let mut first = true;
    for (e, mode) in entries {
        let Some(body) = &e.body else { continue };
        text.push_str(if first { ",\"entry\":[" } else { "," });
        first = false;
        let full_url = Value::String(format!("{base}/{}/{}", e.resource_type, e.id));
        text.push_str("{\"fullUrl\":");
        text.push_str(&hale_fhir::json::to_string(&full_url));
        text.push_str(",\"resource\":");
        text.push_str(body);
        text.push_str(",\"search\":{\"mode\":\"");
        text.push_str(mode);
        text.push_str("\"}}");
    }
    if !first {
        text.push(']');
    }
    text.push('}');
    text
}

fn invalid(at: &str, msg: impl Into<String>) -> ApiError {
    ApiError::new(Category::Invalid, Issue::error(IssueType::Invalid, msg.into()).at(at.to_string()))
}

/// A system search, `GET [base]?_type=A,B&...`: the parameters must be defined on every
/// type searched (all types when `_type` is absent, so then only the common ones such as
/// `_id`, `_lastUpdated`, `_tag`). Matches come type by type in the order of `_type`,
/// each sorted by `_sort`; the cursor is `type index:cursor within the type`.
pub async fn system(st: &ApiState, call: &Call) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut types: Vec<hale_fhir::ResourceType> = Vec::new();
    let mut type_text: Option<String> = None;
    let mut cursor: Option<String> = None;
    for (k, v) in ctx.params.pairs.iter().filter(|(k, _)| k != "_format" && k != "_pretty") {
        match k.as_str() {
            "_type" => {
                for t in v.split(',') {
                    let ty = hale_fhir::ResourceType::parse(t.trim()).ok_or_else(|| {
                        invalid("_type", format!("'{}' is not a resource type", t.chars().take(64).collect::<String>()))
                    })?;
                    if !types.contains(&ty) {
                        types.push(ty);
                    }
                }
                type_text = Some(v.clone());
            }
            "_cursor" => cursor = Some(v.clone()),
            _ => pairs.push((k.clone(), v.clone())),
        }
    }
    if types.is_empty() {
        types = hale_fhir::Definitions::get()
            .resource_types()
            .into_iter()
            .filter_map(hale_fhir::ResourceType::parse)
            .collect();
    }
    let mut reqs = Vec::with_capacity(types.len());
    for ty in &types {
        let req = hale_search::parse::parse(ty, &pairs, ctx.lenient).map_err(|mut issue| {
            issue.diagnostics = format!("{} (searching {ty})", issue.diagnostics);
            ApiError::new(Category::Invalid, issue)
        })?;
        reqs.push(req);
    }
    let first = reqs[0].clone();
    let count = first.count.unwrap_or(st.limits.default_page_size).min(st.limits.max_page_size);
    let want_total = match first.total {
        Some(Total::None) => first.summary == Some(Summary::Count),
        Some(_) => true,
        None => cursor.is_none() || first.summary == Some(Summary::Count),
    };
    let total = if want_total {
        let mut t = 0;
        for req in &reqs {
            t += call.repo.search(req, 0, true).await?.total.unwrap_or(0);
        }
        Some(t)
    } else {
        None
    };
    let (mut at, mut inner) = match &cursor {
        None => (0, None),
        Some(c) => {
            let bad = || {
                ApiError::new(
                    hale_fhir::Category::Invalid,
                    hale_fhir::Issue::error(
                        hale_fhir::IssueType::Invalid,
                        "The paging cursor is not valid for this search",
                    ),
                )
            };
            let (i, rest) = c.split_once(':').ok_or_else(bad)?;
            let i: usize = i.parse().map_err(|_| bad())?;
            if i >= reqs.len() {
                return Err(bad());
            }
            (i, (!rest.is_empty()).then(|| rest.to_string()))
        }
    };
    let mut page =
        hale_repository::SearchPage { entries: Vec::new(), included: Vec::new(), next: None, previous: None, total };
    let page_size = if first.summary == Some(Summary::Count) { 0 } else { count };
    while page_size > 0 && at < reqs.len() {
        let remaining = page_size - page.entries.len();
        if remaining == 0 {
            page.next = Some(format!("{at}:"));
            break;
        }
        let mut req = reqs[at].clone();
        req.cursor = inner.take();
        let part = call.repo.search(&req, remaining, false).await?;
        page.entries.extend(part.entries);
        page.included.extend(part.included);
        if let Some(n) = part.next {
            page.next = Some(format!("{at}:{n}"));
            break;
        }
        at += 1;
    }
    let extra: Vec<(String, String)> = type_text.map(|t| ("_type".to_string(), t)).into_iter().collect();
    respond(ctx, &first, &pairs, count, "", extra, cursor, page)
}

pub async fn get(st: &ApiState, ty: &str, call: &Call) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let pairs = ctx.params.pairs.clone();
    run(st, call, ty, pairs, None).await
}

/// A compartment search: `GET [owner type]/[id]/[type]`
/// (<https://hl7.org/fhir/R4/compartmentdefinition.html>). The Patient compartment is
/// supported.
pub async fn compartment(
    st: &ApiState,
    owner_type: &str,
    owner_id: &str,
    ty: &str,
    call: &Call,
) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    hale_repository::resource_type(owner_type)?;
    let owner = hale_repository::resource_id(owner_id)?;
    let target = hale_repository::resource_type(ty)?;
    if owner_type != "Patient" {
        return Err(ApiError::new(
            Category::NotSupported,
            Issue::error(
                IssueType::NotSupported,
                format!("The {owner_type} compartment is not supported (Patient is)"),
            ),
        ));
    }
    let params = if target.as_str() == "Patient" {
        Vec::new()
    } else {
        hale_fhir::Definitions::get().patient_compartment().get(target.as_str()).cloned().ok_or_else(|| {
            ApiError::new(
                Category::Invalid,
                Issue::error(IssueType::Invalid, format!("{target} is not in the Patient compartment")),
            )
        })?
    };
    let comp = hale_search::parse::Compartment { owner_type: owner_type.into(), owner_id: owner.to_string(), params };
    let pairs = ctx.params.pairs.clone();
    run(st, call, ty, pairs, Some(comp)).await
}

/// POST `[type]/_search` with `application/x-www-form-urlencoded` parameters.
pub async fn post(st: &ApiState, ty: &str, call: &Call, body: Body) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let headers = &call.headers;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let bytes = axum::body::to_bytes(body, st.limits.max_body_bytes).await.map_err(|_| {
        ApiError::new(Category::TooLarge, Issue::error(IssueType::TooLong, "The body is larger than the limit"))
    })?;
    let mut pairs = ctx.params.pairs.clone();
    if !bytes.is_empty() {
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(ApiError::new(
                Category::UnsupportedMediaType,
                Issue::error(IssueType::NotSupported, "_search takes application/x-www-form-urlencoded parameters"),
            ));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            ApiError::new(Category::Invalid, Issue::error(IssueType::Invalid, "The form body is not UTF-8"))
        })?;
        let form = Params::parse(Some(text))
            .map_err(|m| ApiError::new(Category::Invalid, Issue::error(IssueType::Invalid, m)))?;
        pairs.extend(form.pairs);
    }
    run(st, call, ty, pairs, None).await
}

async fn run(
    st: &ApiState,
    call: &Call,
    ty: &str,
    pairs: Vec<(String, String)>,
    compartment: Option<hale_search::parse::Compartment>,
) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    if ty == "AuditEvent" && compartment.is_none() {
        // the audit trail is kept apart from the resources and searched on its own terms
        return super::audit::search(st, call, &pairs).await;
    }
    let ty = hale_repository::resource_type(ty)?;
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| k != "_format" && k != "_pretty")
        .map(|(k, v)| {
            let v = relative_to_base(&ty, &k, v, &ctx.base);
            (k, v)
        })
        .collect();
    // R4 (search, handling errors): unsupported parameters are ignored unless the client
    // (or the operator, `strict_search`) asks for strict handling
    let lenient = ctx.lenient || !(ctx.strict || st.strict_search);
    let mut req =
        hale_search::parse::parse(&ty, &pairs, lenient).map_err(|issue| ApiError::new(Category::Invalid, issue))?;
    let path = match &compartment {
        Some(c) => format!("{}/{}/{ty}", c.owner_type, c.owner_id),
        None => ty.to_string(),
    };
    req.compartment = compartment;
    let count = req.count.unwrap_or(st.limits.default_page_size).min(st.limits.max_page_size);
    let page_size = if req.summary == Some(Summary::Count) { 0 } else { count };
    let want_total = match req.total {
        Some(Total::None) => req.summary == Some(Summary::Count),
        Some(_) => true,
        None => req.cursor.is_none() || req.summary == Some(Summary::Count),
    };
    let page = call.repo.search(&req, page_size, want_total).await?;
    let self_cursor = req.cursor.clone();
    respond(ctx, &req, &pairs, count, &path, Vec::new(), self_cursor, page)
}

/// The searchset Bundle of a page, with its links.
#[allow(clippy::too_many_arguments)]
fn respond(
    ctx: &Ctx,
    req: &hale_search::parse::SearchRequest,
    pairs: &[(String, String)],
    count: usize,
    path: &str,
    extra_kept: Vec<(String, String)>,
    self_cursor: Option<String>,
    page: hale_repository::SearchPage,
) -> Result<Response, ApiError> {
    // links keep what was understood, plus the result parameters
    let mut kept: Vec<(String, String)> = extra_kept;
    kept.extend(req.canonical.iter().cloned());
    for (k, v) in pairs {
        if matches!(k.as_str(), "_sort" | "_summary" | "_elements" | "_total")
            || k.starts_with("_include")
            || k.starts_with("_revinclude")
        {
            kept.push((k.clone(), v.clone()));
        }
    }
    kept.push(("_count".into(), count.to_string()));
    let mut self_pairs = kept.clone();
    if let Some(c) = self_cursor {
        self_pairs.push(("_cursor".into(), c));
    }
    let mut links = vec![json!({"relation": "self", "url": link(ctx, path, &self_pairs)})];
    if let Some(next) = &page.next {
        let mut p = kept.clone();
        p.push(("_cursor".into(), next.clone()));
        links.push(json!({"relation": "next", "url": link(ctx, path, &p)}));
    }
    if let Some(previous) = &page.previous {
        let mut p = kept.clone();
        p.push(("_cursor".into(), previous.clone()));
        links.push(json!({"relation": "previous", "url": link(ctx, path, &p)}));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::now_v7().to_string(),
        "meta": {"lastUpdated": Instant::now().to_fhir()},
        "type": "searchset",
    });
    if let Some(t) = page.total {
        bundle["total"] = json!(t);
    }
    bundle["link"] = Value::Array(links);
    let all = page.entries.iter().map(|e| (e, "match")).chain(page.included.iter().map(|e| (e, "include")));
    if req.summary.is_none() && req.elements.is_none() && !ctx.pretty && req.ignored.is_empty() {
        // the stored text is the resource as served: splice it in without parsing it
        let text = splice(&bundle, &ctx.base, all);
        return Ok(ctx.respond(StatusCode::OK, text));
    }
    let mut entries = Vec::with_capacity(page.entries.len() + page.included.len());
    for (e, mode) in all {
        let Some(body) = &e.body else { continue };
        let mut v: Value = crate::stored_json(body)?;
        if let Some(s) = req.summary {
            hale_search::shape::summary(&mut v, s);
        }
        if let Some(el) = &req.elements {
            hale_search::shape::elements(&mut v, el);
        }
        entries.push(json!({
            "fullUrl": format!("{}/{}/{}", ctx.base, e.resource_type, e.id),
            "resource": v,
            "search": {"mode": mode},
        }));
    }
    if !req.ignored.is_empty() {
        entries.push(ignored_outcome(&req.ignored));
    }
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    Ok(ctx.respond_json(StatusCode::OK, &bundle))
}

/// The searchset entry (`search.mode = outcome`) naming the parameters a lenient search
/// ignored.
fn ignored_outcome(ignored: &[String]) -> Value {
    let issues: Vec<Value> = ignored
        .iter()
        .map(|name| {
            let shown: String = name.chars().take(64).collect();
            json!({
                "severity": "warning",
                "code": "not-supported",
                "diagnostics": format!("The search parameter '{shown}' is not supported here and was ignored"),
                "expression": [shown],
            })
        })
        .collect();
    json!({
        "fullUrl": format!("urn:uuid:{}", uuid::Uuid::now_v7()),
        "resource": {"resourceType": "OperationOutcome", "issue": issues},
        "search": {"mode": "outcome"},
    })
}

/// A reference search value on this server's own base (`http://host/fhir/Patient/1`)
/// as the relative reference Hale stores (`Patient/1`), so both find the same resources
/// (R4 search, reference: a reference may be relative or absolute). Other values, and
/// values of other parameters, are left as they are.
fn relative_to_base(ty: &hale_fhir::ResourceType, name: &str, value: String, base: &str) -> String {
    let code = name.split(':').next().unwrap_or(name);
    let is_reference =
        !code.contains('.') && hale_search::parse::find_param(ty.as_str(), code).is_some_and(|d| d.kind == "reference");
    let prefix = format!("{}/", base.trim_end_matches('/'));
    if !is_reference || !value.contains(&prefix) {
        return value;
    }
    value.split(',').map(|alt| alt.strip_prefix(&prefix).unwrap_or(alt)).collect::<Vec<_>>().join(",")
}

//! history at instance, type and system level:
//! <https://hl7.org/fhir/R4/http.html#history>. Newest first; `_count`, `_since`;
//! paging by an opaque cursor (`_cursor`) that stays correct while new versions are
//! written, since new versions only ever appear before the first page.

use axum::http::StatusCode;
use axum::response::Response;
use hale_fhir::{Category, Issue, IssueType};
use hale_repository::{HistoryQuery, HistoryScope, Instant, Method};
use serde_json::{Value, json};

use crate::negotiate::Ctx;
use crate::{ApiError, ApiState, Call};

fn bad(param: &str, msg: &str) -> ApiError {
    ApiError::new(Category::Invalid, Issue::error(IssueType::Invalid, msg.to_string()).at(param.to_string()))
}

fn query(st: &ApiState, ctx: &Ctx) -> Result<HistoryQuery, ApiError> {
    ctx.check_params(&["_count", "_since", "_cursor"])?;
    let count = match ctx.params.get("_count") {
        None => st.limits.default_page_size,
        Some(c) => c
            .parse::<usize>()
            .map_err(|_| bad("_count", "_count must be a non-negative integer"))?
            .min(st.limits.max_page_size),
    };
    let since = match ctx.params.get("_since") {
        None => None,
        Some(s) => Some(
            Instant::parse(s).ok_or_else(|| bad("_since", "_since must be an instant such as 2024-01-01T00:00:00Z"))?,
        ),
    };
    let cursor = match ctx.params.get("_cursor") {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| bad("_cursor", "_cursor is not one this server issued"))?),
    };
    Ok(HistoryQuery { since, count, cursor, restriction: None })
}

async fn history(st: &ApiState, call: &Call, scope: HistoryScope, path: &str) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let q = query(st, ctx)?;
    let page = call.repo.history(&scope, &q).await?;
    let mut entries = Vec::with_capacity(page.entries.len());
    for e in &page.entries {
        let full_url = format!("{}/{}/{}", ctx.base, e.resource_type, e.id);
        let mut entry = json!({"fullUrl": full_url});
        if let Some(body) = &e.body {
            let v: Value = crate::stored_json(body)?;
            entry["resource"] = v;
        }
        let url = match e.method {
            Method::Post => e.resource_type.to_string(),
            _ => format!("{}/{}", e.resource_type, e.id),
        };
        entry["request"] = json!({"method": e.method.as_str(), "url": url});
        let status = match e.method {
            Method::Post => "201 Created",
            Method::Put if e.version.get() == 1 => "201 Created",
            Method::Put => "200 OK",
            Method::Delete => "204 No Content",
        };
        entry["response"] = json!({
            "status": status,
            "etag": format!("W/\"{}\"", e.version),
            "lastModified": e.last_updated.to_fhir(),
        });
        entries.push(entry);
    }
    let mut keep: Vec<String> = vec![format!("_count={}", q.count)];
    if let Some(s) = ctx.params.get("_since") {
        keep.push(format!("_since={}", s.replace('+', "%2B")));
    }
    let mut self_params = keep.clone();
    if let Some(c) = q.cursor {
        self_params.push(format!("_cursor={c}"));
    }
    let mut links = vec![json!({"relation": "self", "url": format!("{}/{path}?{}", ctx.base, self_params.join("&"))})];
    if let Some(next) = page.next {
        let mut p = keep.clone();
        p.push(format!("_cursor={next}"));
        links.push(json!({"relation": "next", "url": format!("{}/{path}?{}", ctx.base, p.join("&"))}));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::now_v7().to_string(),
        "meta": {"lastUpdated": Instant::now().to_fhir()},
        "type": "history",
    });
    if let Some(t) = page.total {
        bundle["total"] = json!(t);
    }
    bundle["link"] = Value::Array(links);
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    Ok(ctx.respond_json(StatusCode::OK, &bundle))
}

pub async fn system(st: &ApiState, call: &Call) -> Result<Response, ApiError> {
    history(st, call, HistoryScope::System, "_history").await
}

pub async fn type_level(st: &ApiState, ty: &str, call: &Call) -> Result<Response, ApiError> {
    let ty = hale_repository::resource_type(ty)?;
    let path = format!("{ty}/_history");
    history(st, call, HistoryScope::Type(ty), &path).await
}

pub async fn instance(st: &ApiState, ty: &str, id: &str, call: &Call) -> Result<Response, ApiError> {
    let ty = hale_repository::resource_type(ty)?;
    let id = hale_repository::resource_id(id)?;
    let path = format!("{ty}/{id}/_history");
    history(st, call, HistoryScope::Instance(ty, id), &path).await
}

//! Patient/[id]/$everything:
//! <https://hl7.org/fhir/R4/patient-operation-everything.html>. The patient, every
//! resource in their compartment, and the practitioners, organizations, locations and
//! medications those refer to; `_since`, `_type`, `_count` and cursor paging.

use axum::http::StatusCode;
use axum::response::Response;
use hale_fhir::{Category, Issue, IssueType, ResourceType};
use hale_repository::{EverythingQuery, Instant};
use serde_json::{Value, json};

use crate::{ApiError, ApiState, Call};

fn bad(param: &str, msg: &str) -> ApiError {
    ApiError::new(Category::Invalid, Issue::error(IssueType::Invalid, msg.to_string()).at(param.to_string()))
}

pub async fn handle(st: &ApiState, id: &str, call: &Call) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    ctx.check_params(&["_since", "_type", "_count", "_cursor"])?;
    let id = hale_repository::resource_id(id)?;
    let count = match ctx.params.get("_count") {
        None => st.limits.default_page_size,
        Some(c) => c.parse::<usize>().map_err(|_| bad("_count", "_count must be a non-negative integer"))?,
    }
    .min(st.limits.max_page_size);
    let since = match ctx.params.get("_since") {
        None => None,
        Some(s) => Some(Instant::parse(s).ok_or_else(|| bad("_since", "_since must be an instant"))?),
    };
    let types = match ctx.params.get("_type") {
        None => None,
        Some(t) => Some(
            t.split(',')
                .map(|x| {
                    ResourceType::parse(x.trim())
                        .map(|r| r.to_string())
                        .ok_or_else(|| bad("_type", "_type lists resource types"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let query = EverythingQuery {
        since,
        types,
        count,
        cursor: ctx.params.get("_cursor").map(str::to_string),
        restriction: None,
    };
    let page = call.repo.everything(&id, &query).await?;
    let mut keep: Vec<String> = Vec::new();
    for k in ["_since", "_type"] {
        if let Some(v) = ctx.params.get(k) {
            keep.push(format!("{k}={}", v.replace('+', "%2B")));
        }
    }
    keep.push(format!("_count={count}"));
    let base = format!("{}/Patient/{id}/$everything", ctx.base);
    let mut links = vec![json!({"relation": "self", "url": format!("{base}?{}", keep.join("&"))})];
    if let Some(next) = &page.next {
        links.push(json!({"relation": "next", "url": format!("{base}?{}&_cursor={next}", keep.join("&"))}));
    }
    if !ctx.pretty {
        let bundle = json!({
            "resourceType": "Bundle",
            "id": uuid::Uuid::now_v7().to_string(),
            "meta": {"lastUpdated": Instant::now().to_fhir()},
            "type": "searchset",
            "link": links,
        });
        let text = crate::interaction::search::splice(&bundle, &ctx.base, page.entries.iter().map(|e| (e, "match")));
        return Ok(ctx.respond(StatusCode::OK, text));
    }
    let mut entries = Vec::with_capacity(page.entries.len());
    for e in &page.entries {
        let Some(body) = &e.body else { continue };
        let v: Value = crate::stored_json(body)?;
        entries.push(json!({
            "fullUrl": format!("{}/{}/{}", ctx.base, e.resource_type, e.id),
            "resource": v,
            "search": {"mode": "match"},
        }));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::now_v7().to_string(),
        "meta": {"lastUpdated": Instant::now().to_fhir()},
        "type": "searchset",
        "link": links,
    });
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    Ok(ctx.respond_json(StatusCode::OK, &bundle))
}

//! Searching the audit trail: `GET /fhir/AuditEvent?...`, newest first. A security
//! administrator searches by `patient`, `altid` (the agent: `user:ana`,
//! `client:ops`, `system:import`, or a user name), `date` (`ge`, `gt`, `le`, `lt` or a
//! day), `subtype` (`read`, `search-type`, `login`...) and `outcome` (`0`, `4`, `8`); a
//! patient gets the entries about their own record ("who saw my record"). The entries
//! are the stored AuditEvents with their sequence number as id.

use axum::http::StatusCode;
use axum::response::Response;
use hale_fhir::{Category, Issue, IssueType};
use hale_repository::{AuditQuery, Instant};
use serde_json::{Value, json};

use crate::{ApiError, ApiState, Call};

fn invalid(at: &str, msg: impl Into<String>) -> ApiError {
    ApiError::new(Category::Invalid, Issue::error(IssueType::Invalid, msg.into()).at(at.to_string()))
}

/// The bounds of a `date` value: a day, or an instant.
fn bounds(v: &str) -> Option<(i64, i64)> {
    if v.len() == 10 {
        let start = Instant::parse(&format!("{v}T00:00:00Z"))?.millis();
        return Some((start, start + 86_400_000));
    }
    let t = Instant::parse(v)?.millis();
    Some((t, t + 1))
}

pub async fn search(st: &ApiState, call: &Call, pairs: &[(String, String)]) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let mut q = AuditQuery { limit: st.limits.default_page_size, ..AuditQuery::default() };
    let mut links: Vec<(String, String)> = Vec::new();
    for (k, v) in pairs.iter().filter(|(k, _)| k != "_format" && k != "_pretty") {
        match k.as_str() {
            "patient" => {
                let ids: Vec<String> =
                    v.split(',').map(|p| p.trim().trim_start_matches("Patient/").to_string()).collect();
                if ids.iter().any(|i| hale_fhir::ResourceId::parse(i).is_none()) {
                    return Err(invalid("patient", "patient takes Patient ids or Patient/[id] references"));
                }
                q.patients = Some(ids);
            }
            "altid" => {
                let a = v.trim();
                q.agent = Some(if a.contains(':') { a.to_string() } else { format!("user:{a}") });
            }
            "subtype" => q.action = Some(v.rsplit('|').next().unwrap_or(v).to_string()),
            "outcome" => {
                if !matches!(v.as_str(), "0" | "4" | "8" | "12") {
                    return Err(invalid("outcome", "outcome is 0, 4, 8 or 12"));
                }
                q.outcome = Some(v.clone());
            }
            "date" => {
                let (prefix, value) = match v.get(..2) {
                    Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &v[2..]),
                    _ => ("eq", v.as_str()),
                };
                let (start, end) =
                    bounds(value).ok_or_else(|| invalid("date", "date takes a day (YYYY-MM-DD) or an instant"))?;
                match prefix {
                    "ge" => q.since = Some(start),
                    "gt" => q.since = Some(end),
                    "le" => q.before = Some(end),
                    "lt" => q.before = Some(start),
                    _ => {
                        q.since = Some(start);
                        q.before = Some(end);
                    }
                }
            }
            "_count" => {
                let n: usize = v.parse().map_err(|_| invalid("_count", "_count is a number"))?;
                q.limit = n.clamp(1, st.limits.max_page_size);
            }
            "_cursor" => {
                q.below_seq = Some(v.parse().map_err(|_| invalid("_cursor", "The paging cursor is not valid"))?);
                continue;
            }
            other if ctx.lenient => {
                let _ = other;
                continue;
            }
            other => {
                return Err(ApiError::new(
                    Category::Invalid,
                    Issue::error(
                        IssueType::NotSupported,
                        format!("AuditEvent is searched by patient, altid, date, subtype and outcome, not '{other}'"),
                    )
                    .at(other.to_string()),
                ));
            }
        }
        links.push((k.clone(), v.clone()));
    }
    let limit = q.limit;
    q.limit += 1;
    let mut rows = call.repo.search_audit(q).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let url = |extra: Option<i64>| {
        let mut all = links.clone();
        all.push(("_count".into(), limit.to_string()));
        if let Some(c) = extra {
            all.push(("_cursor".into(), c.to_string()));
        }
        let q: Vec<String> = all.iter().map(|(k, v)| format!("{k}={}", super::search::encode(v))).collect();
        format!("{}/AuditEvent?{}", ctx.base, q.join("&"))
    };
    let mut link = vec![json!({"relation": "self", "url": url(None)})];
    if more && let Some((seq, _)) = rows.last() {
        link.push(json!({"relation": "next", "url": url(Some(*seq))}));
    }
    let entries: Vec<Value> = rows
        .iter()
        .filter_map(|(seq, body)| {
            let mut r: Value = serde_json::from_str(body).ok()?;
            r["id"] = json!(seq.to_string());
            Some(json!({"fullUrl": format!("{}/AuditEvent/{seq}", ctx.base), "resource": r, "search": {"mode": "match"}}))
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": link,
        "entry": entries,
    });
    Ok(ctx.respond_json(StatusCode::OK, &bundle))
}

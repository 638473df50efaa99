//! batch and transaction: <https://hl7.org/fhir/R4/http.html#transaction>. `POST /fhir`
//! with a Bundle; the answer is a `transaction-response` or `batch-response` with one
//! entry per request entry, in order.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use hale_repository::Instant;
use hale_repository::{BundleKind, EntryStatus};
use serde_json::{Value, json};

use crate::error::status;
use crate::negotiate::Return;
use crate::{ApiError, ApiState, Call, read_json};

fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}

pub async fn handle(st: &ApiState, call: &Call, body: Body) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let headers = &call.headers;
    let pretty = ctx.pretty;
    ctx.check_params(&[])?;
    let bundle = read_json(st, headers, body, pretty).await?;
    let (kind, answers) = call.repo.process_bundle(bundle).await?;
    let mut entries = Vec::with_capacity(answers.len());
    for a in answers {
        let entry = match a {
            Ok(r) => {
                let code = match r.status {
                    EntryStatus::Created => StatusCode::CREATED,
                    EntryStatus::Ok => StatusCode::OK,
                    EntryStatus::NoContent => StatusCode::NO_CONTENT,
                };
                let mut response = json!({"status": status_line(code)});
                if let Some(l) = &r.location {
                    response["location"] = json!(l);
                }
                if let Some(e) = &r.etag {
                    response["etag"] = json!(e);
                }
                if let Some(m) = r.last_modified {
                    response["lastModified"] = json!(m.to_fhir());
                }
                let mut entry = json!({});
                if let Some(l) = &r.location {
                    let path = l.split("/_history/").next().unwrap_or(l);
                    entry["fullUrl"] = json!(format!("{}/{path}", ctx.base));
                }
                if ctx.prefer_return == Return::Representation
                    && headers.get("prefer").is_some()
                    && let Some(body) = &r.resource
                {
                    entry["resource"] = serde_json::from_str::<Value>(body).unwrap_or(Value::Null);
                }
                entry["response"] = response;
                entry
            }
            Err(e) => {
                let e = ApiError::from(e);
                json!({"response": {"status": status_line(status(e.category)), "outcome": e.outcome.to_json()}})
            }
        };
        entries.push(entry);
    }
    let ty = match kind {
        BundleKind::Transaction => "transaction-response",
        BundleKind::Batch => "batch-response",
    };
    let mut out = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::now_v7().to_string(),
        "meta": {"lastUpdated": Instant::now().to_fhir()},
        "type": ty,
    });
    if !entries.is_empty() {
        out["entry"] = Value::Array(entries);
    }
    Ok(ctx.respond_json(StatusCode::OK, &out))
}

//! read: <https://hl7.org/fhir/R4/http.html#read>

use axum::http::{StatusCode, header};
use axum::response::Response;

use crate::{ApiError, Call};

pub async fn handle(ty: &str, id: &str, call: &Call) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let headers = &call.headers;
    ctx.check_params(&[])?;
    let ty = hale_repository::resource_type(ty)?;
    let id = hale_repository::resource_id(id)?;
    let stored = call.repo.read(&ty, &id).await?;
    // conditional read: If-None-Match with the current ETag
    let etag = format!("W/\"{}\"", stored.version);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == format!("\"{}\"", stored.version)))
    {
        let mut r = ctx.respond(StatusCode::NOT_MODIFIED, String::new());
        r.headers_mut().remove(header::CONTENT_TYPE);
        ctx.version_headers(&mut r, &stored, false);
        return Ok(r);
    }
    if ty.as_str() == "Binary" && native_wanted(headers, ctx.params.get("_format").is_some()) {
        let mut r = native(stored.body.as_deref().unwrap_or(""), headers)?;
        ctx.version_headers(&mut r, &stored, false);
        return Ok(r);
    }
    let mut r = ctx.respond(StatusCode::OK, ctx.stored_text(stored.body.as_deref().unwrap_or("")));
    ctx.version_headers(&mut r, &stored, false);
    Ok(r)
}

/// Whether `path` is `/fhir/Binary/[id]` (a read of one Binary).
pub(crate) fn is_binary_instance(path: &str) -> bool {
    path.strip_prefix("/fhir/Binary/").is_some_and(|id| !id.is_empty() && !id.contains('/') && !id.starts_with('$'))
}

/// Whether a Binary read wants the content itself: neither `_format` nor an `Accept`
/// naming a FHIR (or JSON) type.
fn native_wanted(headers: &axum::http::HeaderMap, format_given: bool) -> bool {
    if format_given {
        return false;
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    !(accept.contains("fhir") || accept.contains("application/json"))
}

/// The content of a stored Binary in its own media type: whole, or the one byte range
/// a `Range: bytes=a-b` header asks for (206; 416 when it lies outside), sandboxed by
/// [`crate::content::sandbox`].
fn native(text: &str, headers: &axum::http::HeaderMap) -> Result<Response, ApiError> {
    use base64::Engine;
    use hale_fhir::{Category, Issue, IssueType};
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let ct = v["contentType"].as_str().unwrap_or("application/octet-stream");
    let bytes = match v["data"].as_str() {
        Some(d) => base64::engine::general_purpose::STANDARD.decode(d).map_err(|_| {
            ApiError::new(Category::Internal, Issue::error(IssueType::Exception, "The stored content cannot be read"))
        })?,
        None => Vec::new(),
    };
    let total = bytes.len();
    let range = headers.get(header::RANGE).and_then(|r| r.to_str().ok()).map(str::trim).map(str::to_string);
    let (status, body, content_range) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        None => (StatusCode::OK, bytes, None),
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            let (start, end) = match (a.trim().parse::<usize>().ok(), b.trim().parse::<usize>().ok()) {
                (Some(s), Some(e)) => (s, e.min(total.saturating_sub(1))),
                (Some(s), None) if b.trim().is_empty() => (s, total.saturating_sub(1)),
                (None, Some(n)) if a.trim().is_empty() => (total.saturating_sub(n), total.saturating_sub(1)),
                _ => (usize::MAX, 0),
            };
            if start >= total || start > end {
                let mut r = Response::new(axum::body::Body::empty());
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                if let Ok(v) = axum::http::HeaderValue::from_str(&format!("bytes */{total}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(r);
            }
            (StatusCode::PARTIAL_CONTENT, bytes[start..=end].to_vec(), Some(format!("bytes {start}-{end}/{total}")))
        }
    };
    let mut r = Response::new(axum::body::Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    crate::content::sandbox(h, ct, None, false);
    h.insert(header::ACCEPT_RANGES, axum::http::HeaderValue::from_static("bytes"));
    if let Some(cr) = content_range.and_then(|c| axum::http::HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    Ok(r)
}

//! Content negotiation (<https://hl7.org/fhir/R4/http.html#mime-type>): `Accept`,
//! `_format`, `_pretty`, `Content-Type` of bodies and `Prefer`; and the shape of every
//! successful response.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use hale_fhir::{Category, Issue, IssueType, OperationOutcome};
use hale_repository::StoredResource;
use serde_json::Value;

use crate::error::ApiError;
use crate::query::Params;

pub const FHIR_JSON: &str = "application/fhir+json";

/// `Prefer: return=...`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

/// What the client asked for, shared by every interaction of a request.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The media type to answer with (`application/fhir+json` or `application/json`).
    pub mime: &'static str,
    pub pretty: bool,
    pub prefer_return: Return,
    /// The client sent `Prefer: handling=lenient`.
    pub lenient: bool,
    /// The client sent `Prefer: handling=strict`.
    pub strict: bool,
    /// The base URL of the FHIR endpoint, e.g. `http://host:8080/fhir`.
    pub base: String,
    pub params: Params,
}

fn media_type(v: &str) -> String {
    v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn is_xml(m: &str) -> bool {
    matches!(
        m,
        "xml" | "text/xml" | "application/xml" | "application/fhir+xml" | "text/xml+fhir" | "application/xml+fhir"
    )
}

/// Chooses the answer's media type from `_format` or `Accept`.
fn choose_mime(headers: &HeaderMap, params: &Params) -> Result<&'static str, ApiError> {
    if let Some(f) = params.get("_format") {
        let m = media_type(f);
        return match m.as_str() {
            "json" | "application/fhir+json" | "application/json+fhir" => Ok(FHIR_JSON),
            "application/json" => Ok("application/json"),
            _ => Err(not_acceptable(&m)),
        };
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(FHIR_JSON);
    };
    let mut saw_xml = false;
    let mut saw_other = String::new();
    for part in accept.split(',') {
        let m = media_type(part);
        if part.contains("q=0") && !part.contains("q=0.") {
            continue;
        }
        match m.as_str() {
            "application/fhir+json" | "application/json+fhir" | "*/*" | "application/*" | "" => {
                return Ok(FHIR_JSON);
            }
            "application/json" => return Ok("application/json"),
            m if is_xml(m) => saw_xml = true,
            m => saw_other = m.to_string(),
        }
    }
    Err(not_acceptable(if saw_xml { "application/fhir+xml" } else { &saw_other }))
}

fn not_acceptable(m: &str) -> ApiError {
    let what: String = m.chars().take(64).collect();
    ApiError::new(
        Category::NotAcceptable,
        Issue::error(
            IssueType::NotSupported,
            format!("This server answers in application/fhir+json only; '{what}' is not supported"),
        ),
    )
}

impl Ctx {
    /// Reads what the client asked for; unknown formats are refused.
    pub fn new(headers: &HeaderMap, raw_query: Option<&str>, public_base: Option<&str>) -> Result<Ctx, ApiError> {
        let params = Params::parse(raw_query)
            .map_err(|m| ApiError::new(Category::Invalid, Issue::error(IssueType::Invalid, m)))?;
        let pretty = match params.get("_pretty") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ApiError::new(
                    Category::Invalid,
                    Issue::error(IssueType::Invalid, "_pretty must be true or false").at("_pretty"),
                ));
            }
        };
        let mime = choose_mime(headers, &params).map_err(|e| e.pretty(pretty))?;
        let mut prefer_return = Return::Representation;
        let mut lenient = false;
        let mut strict = false;
        for v in headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
            for token in v.split([',', ';']).map(str::trim) {
                match token.replace(' ', "").as_str() {
                    "return=minimal" => prefer_return = Return::Minimal,
                    "return=representation" => prefer_return = Return::Representation,
                    "return=OperationOutcome" => prefer_return = Return::OperationOutcome,
                    "handling=lenient" => (lenient, strict) = (true, false),
                    "handling=strict" => (lenient, strict) = (false, true),
                    _ => {}
                }
            }
        }
        let base = fhir_base(headers, public_base);
        Ok(Ctx { mime, pretty, prefer_return, lenient, strict, base, params })
    }

    /// Refuses parameters other than the `allowed` ones and the common ones, unless
    /// the client asked for lenient handling.
    pub fn check_params(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if self.lenient {
            return Ok(());
        }
        for name in self.params.names() {
            if !allowed.contains(&name) && !matches!(name, "_format" | "_pretty") {
                let shown: String = name.chars().take(64).collect();
                return Err(ApiError::new(
                    Category::Invalid,
                    Issue::error(IssueType::NotSupported, format!("Parameter '{shown}' is not supported here"))
                        .at(shown),
                )
                .pretty(self.pretty));
            }
        }
        Ok(())
    }

    pub fn json_text(&self, v: &Value) -> String {
        if self.pretty { hale_fhir::json::to_string_pretty(v) } else { hale_fhir::json::to_string(v) }
    }

    /// Stored JSON text, re-indented when `_pretty=true`.
    pub fn stored_text(&self, text: &str) -> String {
        if self.pretty {
            serde_json::from_str::<Value>(text)
                .map(|v| hale_fhir::json::to_string_pretty(&v))
                .unwrap_or_else(|_| text.to_string())
        } else {
            text.to_string()
        }
    }

    /// A JSON response with this request's media type.
    pub fn respond(&self, status: StatusCode, body: String) -> Response {
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = status;
        r.headers_mut().insert(header::CONTENT_TYPE, content_type(self.mime));
        r
    }

    pub fn respond_json(&self, status: StatusCode, v: &Value) -> Response {
        self.respond(status, self.json_text(v))
    }

    /// The answer to a write, shaped by `Prefer: return`.
    /// Whether a write is answered with the resource (`Prefer: return=representation`,
    /// the default).
    pub fn wants_representation(&self) -> bool {
        matches!(self.prefer_return, Return::Representation)
    }

    pub fn write_response(&self, status: StatusCode, stored: &StoredResource, message: &str) -> Response {
        let mut r = match (self.prefer_return, &stored.body) {
            (Return::Representation, Some(body)) => self.respond(status, self.stored_text(body)),
            (Return::OperationOutcome, _) => {
                self.respond_json(status, &OperationOutcome::single(Issue::information(message.to_string())).to_json())
            }
            _ => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = status;
                r
            }
        };
        self.version_headers(&mut r, stored, true);
        r
    }

    /// ETag, Last-Modified and (for writes) Location.
    pub fn version_headers(&self, r: &mut Response, stored: &StoredResource, location: bool) {
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", stored.version)) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&stored.last_updated.to_http_date()) {
            h.insert(header::LAST_MODIFIED, v);
        }
        if location {
            let url = format!("{}/{}/{}/_history/{}", self.base, stored.resource_type, stored.id, stored.version);
            if let Ok(v) = HeaderValue::from_str(&url) {
                h.insert(header::LOCATION, v.clone());
                h.insert(header::CONTENT_LOCATION, v);
            }
        }
    }
}

pub fn content_type(mime: &str) -> HeaderValue {
    if mime == "application/json" {
        HeaderValue::from_static("application/json; charset=utf-8")
    } else {
        HeaderValue::from_static("application/fhir+json; charset=utf-8")
    }
}

/// Refuses a request body that is not FHIR JSON.
pub fn check_content_type(headers: &HeaderMap, pretty: bool) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(media_type);
    match ct.as_deref() {
        Some("application/fhir+json" | "application/json" | "application/json+fhir") => Ok(()),
        other => {
            let what: String = other.unwrap_or("none").chars().take(64).collect();
            Err(ApiError::new(
                Category::UnsupportedMediaType,
                Issue::error(
                    IssueType::NotSupported,
                    format!("The body must be sent as application/fhir+json; Content-Type was '{what}'"),
                ),
            )
            .pretty(pretty))
        }
    }
}

/// The base URL of the FHIR endpoint: the operator's public base, else `http://` and
/// the request's `Host` (its safe characters) and `/fhir`.
pub fn fhir_base(headers: &HeaderMap, public_base: Option<&str>) -> String {
    match public_base {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            let host: String = host
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
                .collect();
            format!("http://{host}/fhir")
        }
    }
}

/// The request's `Content-Type` when it names neither a FHIR format nor JSON (a
/// Binary's own content, R4 http "Binary"), as sent but trimmed; `None` otherwise.
pub fn native_content_type(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::CONTENT_TYPE)?.to_str().ok()?.trim();
    let m = media_type(raw);
    let fhir = matches!(m.as_str(), "application/fhir+json" | "application/json" | "application/json+fhir")
        || is_xml(&m)
        || m.is_empty();
    // a code has no runs of white space (R4 datatypes, code)
    let code = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    (!fhir && code.len() <= 255).then_some(code)
}

/// Parses `If-Match: W/"3"` (also `"3"` and `3`).
pub fn if_match(headers: &HeaderMap, pretty: bool) -> Result<Option<hale_fhir::VersionId>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let inner = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    hale_fhir::VersionId::parse(inner).map(Some).ok_or_else(|| {
        ApiError::new(
            Category::Invalid,
            Issue::error(IssueType::Invalid, "If-Match must be a version ETag such as W/\"3\"").at("If-Match"),
        )
        .pretty(pretty)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(accept: Option<&str>, query: Option<&str>) -> Result<Ctx, ApiError> {
        let mut h = HeaderMap::new();
        if let Some(a) = accept {
            h.insert(header::ACCEPT, HeaderValue::from_str(a).unwrap());
        }
        Ctx::new(&h, query, None)
    }

    #[test]
    fn negotiation() {
        assert_eq!(ctx(None, None).unwrap().mime, FHIR_JSON);
        assert_eq!(ctx(Some("application/json"), None).unwrap().mime, "application/json");
        assert_eq!(ctx(Some("text/html,application/xml;q=0.9,*/*;q=0.8"), None).unwrap().mime, FHIR_JSON);
        assert_eq!(ctx(Some("application/fhir+xml"), None).unwrap_err().category, Category::NotAcceptable);
        assert_eq!(ctx(None, Some("_format=xml")).unwrap_err().category, Category::NotAcceptable);
        assert_eq!(ctx(Some("application/fhir+xml"), Some("_format=json")).unwrap().mime, FHIR_JSON);
        assert!(ctx(None, Some("_pretty=true")).unwrap().pretty);
        assert_eq!(ctx(None, Some("_pretty=yes")).unwrap_err().category, Category::Invalid);
    }
}

//! Content in its own media type (a Binary, an attachment) served so that it cannot act
//! within Hale's origin: the one rule for the FHIR API's native Binary read and the
//! application's attachment pages.

use axum::http::{HeaderMap, HeaderValue, header};

/// The media types a browser may show in place: raster images, PDF and plain text
/// (SVG and HTML can carry script: they are downloaded).
pub fn shown_inline(content_type: &str) -> bool {
    let m = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(m.as_str(), "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "application/pdf" | "text/plain")
}

/// Sets the headers of sandboxed content: its media type, `nosniff`, a CSP that
/// forbids everything and sandboxes it, and `inline` only when [`shown_inline`] and not
/// `download` — with `name`, stripped to safe characters, as the file name when given.
pub fn sandbox(h: &mut HeaderMap, content_type: &str, name: Option<&str>, download: bool) {
    let ct =
        HeaderValue::from_str(content_type).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, ct);
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("content-security-policy", HeaderValue::from_static("default-src 'none'; sandbox"));
    let kind = if !download && shown_inline(content_type) { "inline" } else { "attachment" };
    let disposition = match name {
        None => kind.to_string(),
        Some(n) => {
            let safe: String = n
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_'))
                .take(80)
                .collect();
            let safe = if safe.trim().is_empty() { "attachment" } else { safe.trim() };
            format!("{kind}; filename=\"{safe}\"")
        }
    };
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
}

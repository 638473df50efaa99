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
    let native = ty.as_str() == "Binary" && native_wanted(headers, ctx.params.get("_format").is_some());
    // the content itself: a Binary's content kept apart stays out of its JSON
    let (mut stored, content) =
        if native { call.repo.read_content(&id).await? } else { (call.repo.read(&ty, &id).await?, None) };
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
    if native {
        // the stored text moves into the response, which decodes it as it is sent, or
        // the content kept apart is read a part at a time as it is sent
        let mut r = self::native(stored.body.take().unwrap_or_default(), content, headers)?;
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
/// [`crate::content::sandbox`]. Content kept apart from the JSON is read from the store
/// a part at a time as it is sent, only the parts asked for; content in the JSON
/// (`data`) is decoded from the stored text as it is sent, a chunk at a time: the
/// stored text is then the one whole copy held (not its parsed JSON, nor the decoded
/// bytes).
fn native(
    text: String,
    content: Option<hale_repository::BinaryContent>,
    headers: &axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    use hale_fhir::{Category, Issue, IssueType};
    let unreadable =
        || ApiError::new(Category::Internal, Issue::error(IssueType::Exception, "The stored content cannot be read"));
    let (ct, data) = content_of(&text).ok_or_else(unreadable)?;
    let total = match &content {
        Some(c) => usize::try_from(c.len()).map_err(|_| unreadable())?,
        None => decoded_len(&text[data.clone()]).ok_or_else(unreadable)?,
    };
    let range = headers.get(header::RANGE).and_then(|r| r.to_str().ok()).map(str::trim).map(str::to_string);
    let (status, (start, end), content_range) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        None => (StatusCode::OK, (0, total), None),
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            let (first, last) = match (a.trim().parse::<usize>().ok(), b.trim().parse::<usize>().ok()) {
                (Some(s), Some(e)) => (s, e.min(total.saturating_sub(1))),
                (Some(s), None) if b.trim().is_empty() => (s, total.saturating_sub(1)),
                (None, Some(n)) if a.trim().is_empty() => (total.saturating_sub(n), total.saturating_sub(1)),
                _ => (usize::MAX, 0),
            };
            if first >= total || first > last {
                let mut r = Response::new(axum::body::Body::empty());
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                if let Ok(v) = axum::http::HeaderValue::from_str(&format!("bytes */{total}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(r);
            }
            (StatusCode::PARTIAL_CONTENT, (first, last + 1), Some(format!("bytes {first}-{last}/{total}")))
        }
    };
    let length = end - start;
    let body = match content {
        Some(c) => axum::body::Body::from_stream(parts(c, start as u64, end as u64)),
        None => {
            axum::body::Body::from_stream(futures_util::stream::iter(DecodeChunks { text, data, next: start, end }))
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    crate::content::sandbox(h, &ct, None, false);
    h.insert(header::ACCEPT_RANGES, axum::http::HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, axum::http::HeaderValue::from(length));
    if let Some(cr) = content_range.and_then(|c| axum::http::HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    Ok(r)
}

/// A stored Binary's `contentType` and where its `data` (base64) lies in the stored
/// text, read without building the JSON tree or copying the data (empty when there is
/// none). `None` when the text is not a Binary as Hale stores it (its data escaped or
/// spread by whitespace: base64 needs neither).
fn content_of(text: &str) -> Option<(String, std::ops::Range<usize>)> {
    #[derive(serde::Deserialize)]
    struct Stored<'a> {
        #[serde(rename = "contentType")]
        content_type: Option<String>,
        // borrowed: a string with escapes fails to read (base64 has none)
        data: Option<&'a str>,
    }
    let stored: Stored<'_> = serde_json::from_str(text).ok()?;
    let ct = stored.content_type.unwrap_or_else(|| "application/octet-stream".into());
    let data = match stored.data {
        None => 0..0,
        Some(d) if !d.contains(|c: char| c.is_ascii_whitespace()) => {
            let at = d.as_ptr() as usize - text.as_ptr() as usize;
            at..at + d.len()
        }
        Some(_) => return None,
    };
    Some((ct, data))
}

/// The number of bytes base64 text `b64` decodes to; `None` when its length is not a
/// multiple of four.
fn decoded_len(b64: &str) -> Option<usize> {
    if !b64.len().is_multiple_of(4) {
        return None;
    }
    let pad = b64.bytes().rev().take(2).take_while(|&c| c == b'=').count();
    Some(b64.len() / 4 * 3 - pad)
}

/// Bytes `start..end` of content kept apart, a stored part at a time.
fn parts(
    content: hale_repository::BinaryContent,
    start: u64,
    end: u64,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::try_unfold((content, start), move |(content, next)| async move {
        if next >= end {
            return Ok(None);
        }
        let (at, mut bytes) = content.part(next).await.map_err(|e| {
            tracing::error!(error = %e, "a Binary's content could not be read");
            std::io::Error::other("the stored content cannot be read")
        })?;
        let upto = (at + bytes.len() as u64).min(end);
        bytes.truncate((upto - at) as usize);
        let chunk = bytes::Bytes::from(bytes).slice((next - at) as usize..);
        Ok(Some((chunk, (content, upto))))
    })
}

/// Bytes decoded per chunk sent: a multiple of three, so each chunk is whole base64 groups.
const CHUNK: usize = 48 * 1024;

/// Decodes bytes `next..end` of the base64 data at `data` in `text`,
/// a chunk at a time; each group of four characters is three bytes, so any byte is
/// reached without decoding what comes before it.
struct DecodeChunks {
    text: String,
    data: std::ops::Range<usize>,
    next: usize,
    end: usize,
}

impl Iterator for DecodeChunks {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        use base64::Engine;
        if self.next >= self.end {
            return None;
        }
        let upto = (self.next - self.next % 3 + CHUNK).min(self.end);
        // the whole groups that hold bytes next..upto
        let (g0, g1) = (self.next / 3, upto.div_ceil(3));
        let data = &self.text[self.data.clone()];
        let group = |g: usize| (g * 4).min(data.len());
        let decoded = match base64::engine::general_purpose::STANDARD.decode(&data[group(g0)..group(g1)]) {
            Ok(d) => d,
            Err(e) => {
                self.next = self.end;
                return Some(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
            }
        };
        let from = self.next - g0 * 3;
        let to = (upto - g0 * 3).min(decoded.len());
        self.next = upto;
        Some(Ok(bytes::Bytes::copy_from_slice(decoded.get(from..to).unwrap_or(&[]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn stored(bytes: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!(
            r#"{{"resourceType":"Binary","id":"b","meta":{{"versionId":"1"}},"contentType":"image/png","data":"{b64}"}}"#
        )
    }

    fn read(text: String, from: usize, to: usize) -> Vec<u8> {
        let (_, data) = content_of(&text).unwrap();
        let chunks = DecodeChunks { text, data, next: from, end: to };
        chunks.flat_map(|c| c.unwrap().to_vec()).collect()
    }

    #[test]
    fn any_byte_range_decodes_from_the_stored_text_alone() {
        let bytes: Vec<u8> = (0..(3 * CHUNK + 5)).map(|i| (i * 7 + i / 251) as u8).collect();
        let text = stored(&bytes);
        let (ct, data) = content_of(&text).unwrap();
        assert_eq!(ct, "image/png");
        assert_eq!(decoded_len(&text[data]), Some(bytes.len()));
        for (a, b) in [
            (0, bytes.len()),
            (0, 1),
            (1, 3),
            (2, 5),
            (CHUNK - 1, CHUNK + 2),
            (5, 2 * CHUNK + 7),
            (bytes.len() - 1, bytes.len()),
        ] {
            assert_eq!(read(text.clone(), a, b), bytes[a..b], "{a}..{b}");
        }
        // lengths 0, 1 and 2 past a whole group (the padding)
        for n in [0usize, 1, 2, 3, 4] {
            let t = stored(&bytes[..n]);
            let (_, d) = content_of(&t).unwrap();
            assert_eq!(decoded_len(&t[d]), Some(n));
            assert_eq!(read(t, 0, n), bytes[..n]);
        }
        // no data; data that is not as Hale stores it
        assert_eq!(
            content_of(r#"{"resourceType":"Binary","contentType":"text/plain"}"#),
            Some(("text/plain".into(), 0..0))
        );
        assert_eq!(content_of(r#"{"resourceType":"Binary","data":"aGVs\nbG8="}"#), None);
        assert_eq!(content_of(r#"{"resourceType":"Binary","data":"aGVs bG8="}"#), None);
        assert_eq!(decoded_len("abc"), None);
    }
}

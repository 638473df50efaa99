//! FHIR JSON in and out. `serde_json` is built with `arbitrary_precision`, so a
//! number keeps the exact text it arrived with (`1.50` stays `1.50`), and with
//! `preserve_order`, so properties keep their order.
//!
//! Before parsing, [`check_limits`] scans the raw bytes once, without allocating, and
//! rejects input nested deeper or carrying longer strings than configured.

use serde_json::Value;

use crate::outcome::{Issue, IssueType};

/// Bounds on one JSON document.
#[derive(Debug, Clone, Copy)]
pub struct JsonLimits {
    /// Maximum nesting of objects and arrays.
    pub max_depth: usize,
    /// Maximum length of one string, in bytes (as encoded in the input).
    pub max_string_bytes: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits { max_depth: 64, max_string_bytes: 8 * 1024 * 1024 }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonError {
    /// Not JSON; the message gives line and column.
    Syntax(String),
    /// Deeper than [`JsonLimits::max_depth`].
    TooDeep { limit: usize },
    /// A string longer than [`JsonLimits::max_string_bytes`].
    StringTooLong { limit: usize },
}

impl JsonError {
    pub fn to_issue(&self) -> Issue {
        match self {
            JsonError::Syntax(m) => Issue::error(IssueType::Structure, format!("The body is not valid JSON: {m}")),
            JsonError::TooDeep { limit } => {
                Issue::error(IssueType::TooLong, format!("The JSON is nested deeper than the limit of {limit} levels"))
            }
            JsonError::StringTooLong { limit } => Issue::error(
                IssueType::TooLong,
                format!("The JSON holds a string longer than the limit of {limit} bytes"),
            ),
        }
    }
}

/// Scans raw JSON bytes for nesting depth and string length. Malformed input is left
/// to the parser; this only enforces the bounds, in one pass and O(1) memory.
pub fn check_limits(bytes: &[u8], limits: &JsonLimits) -> Result<(), JsonError> {
    let mut depth = 0usize;
    let mut i = 0usize;
    let n = bytes.len();
    while i < n {
        match bytes[i] {
            b'{' | b'[' => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err(JsonError::TooDeep { limit: limits.max_depth });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < n && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i.min(n) - start > limits.max_string_bytes {
                    return Err(JsonError::StringTooLong { limit: limits.max_string_bytes });
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Parses a document under limits.
pub fn parse(bytes: &[u8], limits: &JsonLimits) -> Result<Value, JsonError> {
    check_limits(bytes, limits)?;
    serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "unexpected end of input",
            _ => "syntax error",
        };
        JsonError::Syntax(format!("{what} at line {} column {}", e.line(), e.column()))
    })
}

/// Compact JSON text.
pub fn to_string(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Indented JSON text (`_pretty=true`).
pub fn to_string_pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_precision() {
        let v = parse(br#"{"a":1.50,"b":0.000000000000000000001,"c":12345678901234567890.10}"#, &JsonLimits::default())
            .unwrap();
        assert_eq!(to_string(&v), r#"{"a":1.50,"b":0.000000000000000000001,"c":12345678901234567890.10}"#);
    }

    #[test]
    fn property_order_is_kept() {
        let v = parse(br#"{"z":1,"a":2}"#, &JsonLimits::default()).unwrap();
        assert_eq!(to_string(&v), r#"{"z":1,"a":2}"#);
    }

    #[test]
    fn depth_limit_is_enforced_before_parsing() {
        let limits = JsonLimits { max_depth: 3, max_string_bytes: 100 };
        assert!(parse(br#"{"a":{"b":[1]}}"#, &limits).is_ok());
        assert_eq!(parse(br#"{"a":{"b":[[1]]}}"#, &limits), Err(JsonError::TooDeep { limit: 3 }));
        // brackets inside strings do not count
        assert!(parse(br#"{"a":"[[[[[[["}"#, &limits).is_ok());
    }

    #[test]
    fn string_limit_is_enforced() {
        let limits = JsonLimits { max_depth: 3, max_string_bytes: 4 };
        assert!(parse(br#"{"a":"abcd"}"#, &limits).is_ok());
        assert_eq!(parse(br#"{"a":"abcde"}"#, &limits), Err(JsonError::StringTooLong { limit: 4 }));
        assert!(parse(br#"{"a":"a\"c"}"#, &limits).is_ok());
    }

    #[test]
    fn syntax_errors_name_the_position() {
        match parse(b"{\n  \"a\": }", &JsonLimits::default()) {
            Err(JsonError::Syntax(m)) => assert!(m.contains("line 2"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

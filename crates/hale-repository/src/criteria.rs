//! Criteria of conditional interactions (`If-None-Exist`, conditional update and
//! delete, conditional references): a search query, resolved by the search engine.
//! Result parameters (`_sort`, `_count`, `_include`...) make no sense there and are
//! refused, as are unknown parameters (ignoring one could update or delete the wrong
//! resource).

use hale_fhir::{Issue, IssueType, OperationOutcome, ResourceType};
use hale_store::Criteria;

use crate::{Error, Result};

fn bad(msg: String, param: &str) -> Error {
    Error::Invalid(OperationOutcome::single(Issue::error(IssueType::Invalid, msg).at(param.to_string())))
}

/// Decodes `%XX` and `+` (form encoding) into UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a query string (`identifier=system|value&...`) into criteria for `ty`.
pub fn parse_criteria(ty: &ResourceType, query: &str) -> Result<Criteria> {
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name =
            percent_decode(raw_name).ok_or_else(|| bad("The query is not valid percent-encoding".into(), raw_name))?;
        let value =
            percent_decode(raw_value).ok_or_else(|| bad("The query is not valid percent-encoding".into(), &name))?;
        if matches!(name.as_str(), "_format" | "_pretty") {
            continue;
        }
        if name.starts_with("_include")
            || name.starts_with("_revinclude")
            || matches!(name.as_str(), "_sort" | "_count" | "_summary" | "_elements" | "_total" | "_cursor")
        {
            return Err(bad(format!("'{name}' has no meaning in a conditional operation"), &name));
        }
        pairs.push((name, value));
    }
    if pairs.is_empty() {
        return Err(bad("A conditional operation needs search criteria".into(), "query"));
    }
    let request =
        hale_search::parse::parse(ty, &pairs, false).map_err(|i| Error::Invalid(OperationOutcome::single(i)))?;
    Ok(Criteria { request })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty() -> ResourceType {
        ResourceType::parse("Patient").unwrap()
    }

    #[test]
    fn criteria_are_searches() {
        let c = parse_criteria(&ty(), "identifier=http%3A%2F%2Fh%7C1,%7C2,3&name=x").unwrap();
        assert_eq!(c.request.clauses.len(), 2);
        assert_eq!(c.request.clauses[0].values.len(), 3);
    }

    #[test]
    fn unknown_empty_or_result_parameters_are_refused() {
        assert!(parse_criteria(&ty(), "nonsense=x").is_err());
        assert!(parse_criteria(&ty(), "").is_err());
        assert!(parse_criteria(&ty(), "_id=a b").is_err());
        assert!(parse_criteria(&ty(), "identifier=").is_err());
        assert!(parse_criteria(&ty(), "name=x&_sort=name").is_err());
        assert!(parse_criteria(&ty(), "_id=a,b").is_ok());
    }
}

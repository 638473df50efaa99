//! The rules R4 states for a Bundle's entries beyond its invariants (`bdl-*`, checked
//! with the other invariants):
//!
//! - Bundle.entry.fullUrl (<https://hl7.org/fhir/R4/bundle-definitions.html#Bundle.entry.fullUrl>):
//!   "The fullUrl SHALL NOT disagree with the id in the resource — i.e. if the fullUrl
//!   is not a urn:uuid, the URL shall be version-independent URL consistent with the
//!   Resource.id." A RESTful fullUrl (`[base]/Type/id`) names the resource's own type
//!   and id.
//! - A document (<https://hl7.org/fhir/R4/documents.html>) carries what its Composition
//!   refers to: every reference of the Composition (its first entry: subject, author,
//!   attester, custodian, encounter, each section's author, focus and entries...)
//!   resolves to an entry of the bundle, by the resolution rules of
//!   <https://hl7.org/fhir/R4/bundle.html#references> (an absolute reference or a URN by
//!   `fullUrl`; a relative one against the base of the Composition's entry, or by type
//!   and id). The entries' own references (an Observation's performer) may point
//!   outside the document.

use serde_json::{Map, Value};

use crate::outcome::{Issue, IssueType};

/// `Type/id` at the end of a RESTful URL (version-independent, or with `/_history/n`):
/// the base before it, the type (a concrete R4 resource type) and the id.
fn restful(url: &str) -> Option<(&str, &str, &str)> {
    let unversioned = url.split("/_history/").next().unwrap_or(url);
    let (rest, _) = unversioned.rsplit_once('/')?;
    let base = rest.rsplit_once('/').map_or("", |(b, _)| b);
    let tail = unversioned.get(if base.is_empty() { 0 } else { base.len() + 1 }..)?;
    let (ty, id) = crate::ids::split_reference(tail)?;
    crate::definitions::Definitions::get().is_concrete_resource(ty).then_some((base, ty, id))
}

/// The issues of a Bundle's entries (`obj`, at `path`).
pub fn check(obj: &Map<String, Value>, path: &str) -> Vec<Issue> {
    let mut issues = Vec::new();
    let entries: &[Value] = obj.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for (i, e) in entries.iter().enumerate() {
        let (Some(full), Some(r)) = (e.get("fullUrl").and_then(Value::as_str), e.get("resource")) else { continue };
        if full.starts_with("urn:") {
            continue;
        }
        let (Some((_, ty, id)), Some(rt), Some(rid)) =
            (restful(full), r.get("resourceType").and_then(Value::as_str), r.get("id").and_then(Value::as_str))
        else {
            continue;
        };
        if ty != rt || id != rid {
            issues.push(
                Issue::error(
                    IssueType::Invalid,
                    format!(
                        "The fullUrl {full} disagrees with the resource it names ({rt}/{rid}): a fullUrl that is not a URN ends with the resource's type and id"
                    ),
                )
                .at(format!("{path}.entry[{i}].fullUrl")),
            );
        }
    }
    if obj.get("type").and_then(Value::as_str) == Some("document") {
        unresolved_in_document(entries, path, &mut issues);
    }
    issues
}

/// Every reference of a document's Composition resolves to one of its entries.
fn unresolved_in_document(entries: &[Value], path: &str, issues: &mut Vec<Issue>) {
    let full_urls: Vec<&str> = entries.iter().filter_map(|e| e.get("fullUrl").and_then(Value::as_str)).collect();
    let type_ids: Vec<(&str, &str)> = entries
        .iter()
        .filter_map(|e| {
            let r = e.get("resource")?;
            Some((r.get("resourceType")?.as_str()?, r.get("id")?.as_str()?))
        })
        .collect();
    let resolves = |reference: &str, holder: Option<&str>| -> bool {
        let reference = reference.split("/_history/").next().unwrap_or(reference);
        if reference.starts_with("urn:") || reference.contains("://") {
            return full_urls.contains(&reference);
        }
        let Some((_, ty, id)) = restful(reference) else { return false };
        // against the base of the entry that holds the reference, else by type and id
        let base = holder.filter(|h| !h.starts_with("urn:")).and_then(restful).map(|(b, _, _)| b);
        base.is_some_and(|b| full_urls.contains(&format!("{b}/{ty}/{id}").as_str()))
            || type_ids.contains(&(ty, id))
            || full_urls.iter().any(|u| restful(u).is_some_and(|(_, t, i)| t == ty && i == id))
    };
    // the Composition: the first entry (bdl-11 holds that it is one)
    for (i, e) in entries.iter().enumerate().take(1) {
        let Some(r) = e.get("resource").filter(|r| r["resourceType"] == "Composition") else { continue };
        let holder = e.get("fullUrl").and_then(Value::as_str);
        let mut found = Vec::new();
        references(r, &format!("{path}.entry[{i}].resource"), &mut found);
        for (at, reference) in found {
            if !resolves(reference, holder) {
                issues.push(
                    Issue::error(
                        IssueType::Invalid,
                        format!(
                            "The document refers to {reference}, which is not in the document: a document bundle holds every resource it refers to"
                        ),
                    )
                    .at(at),
                );
            }
        }
    }
}

/// The `reference`s in `v` (at `path`) other than to contained resources (`#id`), with
/// where each is.
fn references<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                if k == "reference"
                    && let Some(r) = child.as_str()
                {
                    if !r.starts_with('#') {
                        out.push((format!("{path}.reference"), r));
                    }
                    continue;
                }
                references(child, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                references(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issues(b: Value) -> Vec<String> {
        check(b.as_object().unwrap(), "Bundle").into_iter().map(|i| i.expression.unwrap_or_default()).collect()
    }

    #[test]
    fn a_full_url_names_its_resource() {
        let b = |full: &str| {
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                {"fullUrl": full, "resource": {"resourceType": "Patient", "id": "p1"}}]})
        };
        assert!(issues(b("http://example.org/fhir/Patient/p1")).is_empty());
        assert!(issues(b("urn:uuid:9d6e4d1a-6a47-4f0c-8b9e-1b7c3a3a0c11")).is_empty());
        assert!(issues(b("http://example.org/fhir/Patient/p1/_history/2")).is_empty());
        assert_eq!(issues(b("http://example.org/fhir/Patient/p2")), ["Bundle.entry[0].fullUrl"]);
        assert_eq!(issues(b("http://example.org/fhir/Observation/p1")), ["Bundle.entry[0].fullUrl"]);
        // not a RESTful URL: nothing to agree with
        assert!(issues(b("http://example.org/some/document")).is_empty());
    }

    #[test]
    fn a_document_holds_what_it_refers_to() {
        let doc = |subject: &str| {
            json!({"resourceType": "Bundle", "type": "document", "entry": [
                {"fullUrl": "http://example.org/fhir/Composition/c1", "resource": {"resourceType": "Composition",
                    "id": "c1", "subject": {"reference": subject}, "author": [{"reference": "urn:uuid:5b3c1c57-27f1-4ad3-9ad5-3bd2f0a4d2a1"}],
                    "section": [{"entry": [{"reference": "#x"}, {"display": "no reference"}]}]}},
                {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": {"resourceType": "Patient", "id": "p1"}},
                {"fullUrl": "urn:uuid:5b3c1c57-27f1-4ad3-9ad5-3bd2f0a4d2a1", "resource": {"resourceType": "Practitioner"}}]})
        };
        assert!(issues(doc("Patient/p1")).is_empty());
        assert!(issues(doc("http://example.org/fhir/Patient/p1")).is_empty());
        assert!(issues(doc("Patient/p1/_history/1")).is_empty());
        assert_eq!(issues(doc("Patient/p2")), ["Bundle.entry[0].resource.subject.reference"]);
        assert_eq!(issues(doc("http://other.example/fhir/Patient/p1")), ["Bundle.entry[0].resource.subject.reference"]);
        // the other entries may refer outside the document
        let mut outward = doc("Patient/p1");
        outward["entry"][1]["resource"]["generalPractitioner"] = json!([{"reference": "Practitioner/elsewhere"}]);
        assert!(issues(outward).is_empty());
        // a collection may refer outside itself
        let mut c = doc("Patient/p2");
        c["type"] = json!("collection");
        assert!(issues(c).is_empty());
    }
}

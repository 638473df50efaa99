//! `_summary` and `_elements` (<https://hl7.org/fhir/R4/search.html#summary>): the
//! parts of a resource a search returns. A shortened resource is tagged `SUBSETTED`.

use hale_fhir::Definitions;
use serde_json::{Value, json};

use crate::parse::Summary;

const SUBSETTED: &str = "SUBSETTED";
const OBSERVATION_VALUE: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

fn mark_subsetted(obj: &mut serde_json::Map<String, Value>) {
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        let tags = m.entry("tag").or_insert_with(|| json!([]));
        if let Some(t) = tags.as_array_mut()
            && !t.iter().any(|x| x["code"] == SUBSETTED)
        {
            t.push(json!({"system": OBSERVATION_VALUE, "code": SUBSETTED}));
        }
    }
}

fn keep(resource: &mut Value, wanted: impl Fn(&str) -> bool) {
    let Some(obj) = resource.as_object_mut() else { return };
    obj.retain(|k, _| matches!(k.as_str(), "resourceType" | "id" | "meta") || wanted(k.trim_start_matches('_')));
    mark_subsetted(obj);
}

/// Applies `_summary` (other than `count`) to a resource.
pub fn summary(resource: &mut Value, s: Summary) {
    let ty = resource.get("resourceType").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(td) = Definitions::get().type_def(&ty) else { return };
    let element_of =
        |k: &str| td.elements.iter().find(|e| e.name == k || (e.is_choice() && k.starts_with(e.base_name())));
    match s {
        Summary::False | Summary::Count => {}
        Summary::True => keep(resource, |k| element_of(k).is_some_and(|e| e.is_summary)),
        Summary::Text => keep(resource, |k| k == "text" || element_of(k).is_some_and(|e| e.min > 0)),
        Summary::Data => keep(resource, |k| k != "text"),
    }
}

/// Applies `_elements` to a resource.
pub fn elements(resource: &mut Value, names: &[String]) {
    keep(resource, |k| {
        names.iter().any(|n| n == k || n.strip_prefix(&format!("{}.", resource_type_hint(n))) == Some(k))
    });
}

fn resource_type_hint(n: &str) -> &str {
    n.split('.').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_keep_what_is_asked() {
        let mut p =
            json!({"resourceType":"Patient","id":"1","name":[{"family":"x"}],"gender":"male","birthDate":"2000"});
        elements(&mut p, &["gender".to_string()]);
        assert_eq!(p["gender"], "male");
        assert!(p.get("name").is_none() && p.get("birthDate").is_none());
        assert_eq!(p["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn summaries() {
        let base = json!({"resourceType":"Patient","id":"1","text":{"status":"generated","div":"<div>x</div>"},"name":[{"family":"x"}],"photo":[{"url":"http://x"}]});
        let mut t = base.clone();
        summary(&mut t, Summary::True);
        assert!(t.get("name").is_some() && t.get("photo").is_none() && t.get("text").is_none());
        let mut d = base.clone();
        summary(&mut d, Summary::Data);
        assert!(d.get("text").is_none() && d.get("photo").is_some());
        let mut x = base.clone();
        summary(&mut x, Summary::Text);
        assert!(x.get("text").is_some() && x.get("name").is_none());
    }
}

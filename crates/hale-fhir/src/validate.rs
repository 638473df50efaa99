//! Structural validation of a resource against the R4 definitions
//! (<https://hl7.org/fhir/R4/json.html>, <https://hl7.org/fhir/R4/datatypes.html>):
//! known resource type; no unknown elements; JSON kinds and R4 regular expressions of
//! primitives; cardinality (including arrays exactly where `max > 1`); one type per
//! choice element; required bindings to the value sets the definitions expand; no
//! empty objects, arrays or strings; no `fhir_comments`; an Attachment's `size` and
//! `hash` true to its `data`. Every issue names its element, e.g.
//! `Patient.name[0].given[1]`.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::definitions::{Definitions, ElementDef, Max, TypeDef, TypeKind};
use crate::outcome::{Issue, IssueType};

/// Stop collecting after this many issues: enough to fix, bounded for hostile input.
const MAX_ISSUES: usize = 100;

/// Validates a resource; an empty result means valid.
pub fn validate_resource(resource: &Value) -> Vec<Issue> {
    let mut v = Validator { defs: Definitions::get(), issues: Vec::new(), contained: Vec::new() };
    v.resource(resource, None);
    v.issues
}

/// The compiled regular expression of a primitive type: compiled once for all types and
/// shared, so each thread keeps its own matching cache instead of rebuilding one per value.
fn regex_for(type_name: &str) -> Option<&'static Regex> {
    static ALL: OnceLock<HashMap<String, Regex>> = OnceLock::new();
    ALL.get_or_init(|| {
        Definitions::get()
            .primitive_regexes()
            .filter_map(|(name, pattern)| Regex::new(&format!("^(?:{pattern})$")).ok().map(|r| (name.to_string(), r)))
            .collect()
    })
    .get(type_name)
}

struct Validator<'d> {
    defs: &'d Definitions,
    issues: Vec<Issue>,
    /// The ids of the contained resources of each resource being validated, innermost
    /// last: a narrative's internal links may lead to them.
    contained: Vec<Vec<String>>,
}

/// `path.key`, built without the formatting machinery: every element of every
/// resource validated gets one, and it is read only when there is an issue.
fn child_path(path: &str, key: &str) -> String {
    let mut s = String::with_capacity(path.len() + 1 + key.len());
    s.push_str(path);
    s.push('.');
    s.push_str(key);
    s
}

/// `path[i]`, likewise.
fn item_path(path: &str, i: usize) -> String {
    let mut s = String::with_capacity(path.len() + 6);
    s.push_str(path);
    s.push('[');
    s.push_str(&i.to_string());
    s.push(']');
    s
}

impl Validator<'_> {
    fn push(&mut self, code: IssueType, path: &str, msg: String) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(Issue::error(code, msg).at(path));
        }
    }

    /// A resource at `path` (None for the root, where the path starts with its type).
    fn resource(&mut self, value: &Value, path: Option<&str>) {
        let loc = path.unwrap_or("Resource").to_string();
        let Some(obj) = value.as_object() else {
            self.push(IssueType::Structure, &loc, "A resource must be a JSON object".into());
            return;
        };
        let Some(rt) = obj.get("resourceType") else {
            self.push(IssueType::Required, &loc, "The resource has no resourceType".into());
            return;
        };
        let Some(rt) = rt.as_str() else {
            self.push(IssueType::Structure, &format!("{loc}.resourceType"), "resourceType must be a string".into());
            return;
        };
        if !self.defs.is_concrete_resource(rt) {
            self.push(
                IssueType::NotSupported,
                &format!("{loc}.resourceType"),
                format!("'{rt}' is not a known FHIR R4 resource type"),
            );
            return;
        }
        let Some(td) = self.defs.type_def(rt) else {
            self.push(IssueType::NotSupported, &format!("{loc}.resourceType"), format!("'{rt}' has no definition"));
            return;
        };
        let here = match path {
            None => rt.to_string(),
            Some(p) => p.to_string(),
        };
        let ids = obj.get("contained").and_then(Value::as_array).into_iter().flatten();
        self.contained.push(ids.filter_map(|c| c.get("id")?.as_str().map(str::to_string)).collect());
        self.object(obj, td, &here, true);
        self.contained.pop();
        if rt == "Bundle" {
            for issue in crate::bundle::check(obj, &here) {
                if self.issues.len() < MAX_ISSUES {
                    self.issues.push(issue);
                }
            }
        }
    }

    fn object(&mut self, obj: &Map<String, Value>, td: &TypeDef, path: &str, is_resource: bool) {
        if obj.is_empty() || (is_resource && obj.len() == 1) && td.kind != TypeKind::Resource {
            self.push(IssueType::Structure, path, "An element must have a value or children (ele-1)".into());
            return;
        }
        if td.name == "Attachment" {
            self.attachment(obj, path);
        }
        // element index -> JSON names present for it (choice elements may have several)
        // (element index, property name) of each element present; a handful per object,
        // so a list beats a map
        let mut present: Vec<(usize, &str)> = Vec::new();
        for (key, val) in obj {
            if key == "resourceType" && is_resource {
                continue;
            }
            if key == "fhir_comments" {
                let at = child_path(path, key);
                self.push(IssueType::Structure, &at, "fhir_comments is a DSTU2 leftover, not part of R4 JSON".into());
                continue;
            }
            let (name, underscore) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            let child = child_path(path, key);
            let Some((el, ty)) = td.property(name) else {
                self.push(IssueType::Structure, &child, format!("Unknown element '{key}' in {}", td.name));
                continue;
            };
            let idx = td.elements.iter().position(|e| std::ptr::eq(e, el)).unwrap_or(usize::MAX);
            if !present.contains(&(idx, name)) {
                present.push((idx, name));
            }
            if underscore {
                self.primitive_extension(val, el, ty, &child_path(path, name), obj.get(name));
            } else {
                let has_ext = obj.keys().any(|k| k.strip_prefix('_') == Some(name));
                self.element_value(val, el, ty, &child, has_ext);
            }
        }
        for (i, el) in td.elements.iter().enumerate() {
            let names: Vec<&str> = present.iter().filter(|p| p.0 == i).map(|p| p.1).collect();
            match names.len() {
                0 if el.min > 0 => {
                    let name = if el.is_choice() { el.name.as_str() } else { el.base_name() };
                    self.push(
                        IssueType::Required,
                        &format!("{path}.{}", name.trim_end_matches("[x]")),
                        format!("Element '{name}' is required (min {}) in {}", el.min, td.name),
                    );
                }
                n if n > 1 => {
                    self.push(
                        IssueType::Structure,
                        &format!("{path}.{}", names[1]),
                        format!("Only one of {} may be present for {}", names.join(", "), el.name),
                    );
                }
                _ => {}
            }
        }
    }

    fn element_value(&mut self, val: &Value, el: &ElementDef, ty: &str, path: &str, has_ext: bool) {
        if el.is_many() {
            let Some(items) = val.as_array() else {
                self.push(
                    IssueType::Structure,
                    path,
                    format!("Element '{}' repeats and must be a JSON array", el.name),
                );
                return;
            };
            if items.is_empty() {
                self.push(IssueType::Structure, path, "Arrays must not be empty".into());
                return;
            }
            if let Max::N(m) = el.max
                && items.len() > m as usize
            {
                self.push(IssueType::Structure, path, format!("At most {m} values are allowed"));
            }
            for (i, item) in items.iter().enumerate() {
                let p = item_path(path, i);
                if item.is_null() && has_ext && self.defs.is_primitive(ty) {
                    continue;
                }
                self.value(item, el, ty, &p);
            }
        } else {
            if val.is_array() {
                self.push(
                    IssueType::Structure,
                    path,
                    format!("Element '{}' does not repeat and must not be an array", el.name),
                );
                return;
            }
            self.value(val, el, ty, path);
        }
    }

    fn value(&mut self, val: &Value, el: &ElementDef, ty: &str, path: &str) {
        if self.defs.is_primitive(ty) {
            self.primitive(val, ty, path);
            if let (Some(vs), Some(code)) = (&el.binding, val.as_str())
                && let Some(codes) = self.defs.value_set(vs)
                && !codes.contains(code)
            {
                self.push(IssueType::CodeInvalid, path, format!("'{code}' is not in the required value set {vs}"));
            }
            return;
        }
        if ty == "Resource" || self.defs.is_concrete_resource(ty) {
            self.resource(val, Some(path));
            return;
        }
        let Some(td) = self.defs.type_def(ty) else {
            // a type the tables do not describe: accept any object
            if !val.is_object() {
                self.push(IssueType::Structure, path, format!("A {ty} must be a JSON object"));
            }
            return;
        };
        match val.as_object() {
            Some(obj) => self.object(obj, td, path, false),
            None => self.push(IssueType::Structure, path, format!("A {ty} must be a JSON object")),
        }
    }

    fn primitive(&mut self, val: &Value, ty: &str, path: &str) {
        match ty {
            "boolean" => {
                if !val.is_boolean() {
                    self.push(IssueType::Value, path, "A boolean must be a JSON true or false".into());
                }
            }
            "integer" | "positiveInt" | "unsignedInt" => {
                let n = match val {
                    Value::Number(n) => n.as_i64().filter(|_| !n.to_string().contains(['.', 'e', 'E'])),
                    _ => None,
                };
                let ok = match (ty, n) {
                    (_, None) => false,
                    ("integer", Some(n)) => i32::try_from(n).is_ok(),
                    ("positiveInt", Some(n)) => n >= 1 && n <= i32::MAX as i64,
                    (_, Some(n)) => n >= 0 && n <= i32::MAX as i64,
                };
                if !ok {
                    self.push(IssueType::Value, path, format!("Not a valid {ty}: expected a JSON integer in range"));
                }
            }
            "decimal" => match val {
                Value::Number(n) => {
                    let text = n.to_string();
                    if let Some(re) = regex_for("decimal")
                        && !re.is_match(&text)
                    {
                        self.push(IssueType::Value, path, format!("'{text}' is not a valid decimal"));
                    }
                }
                _ => self.push(IssueType::Value, path, "A decimal must be a JSON number".into()),
            },
            _ => {
                let Some(s) = val.as_str() else {
                    self.push(IssueType::Value, path, format!("A {ty} must be a JSON string"));
                    return;
                };
                if s.is_empty() {
                    self.push(IssueType::Value, path, "Strings must not be empty".into());
                    return;
                }
                if ty == "xhtml" {
                    let contained: Vec<&str> =
                        self.contained.last().into_iter().flatten().map(String::as_str).collect();
                    if let Err(e) = crate::narrative::check(s, &contained) {
                        self.push(IssueType::Value, path, format!("Narrative: {e}"));
                    }
                    return;
                }
                if ty == "string" || ty == "markdown" {
                    // the R4 pattern [ \r\n\t\S]+ is "not only whitespace"
                    if s.trim().is_empty() {
                        self.push(IssueType::Value, path, format!("A {ty} must not be only whitespace"));
                    }
                    return;
                }
                if let Some(re) = regex_for(ty)
                    && !re.is_match(s)
                {
                    let shown: String = s.chars().take(64).collect();
                    self.push(IssueType::Value, path, format!("'{shown}' is not a valid {ty}"));
                }
            }
        }
    }

    /// An Attachment's `size` and `hash` describe its `data` (R4 datatypes, Attachment:
    /// the number of bytes, and the SHA-1 of the data in base64).
    fn attachment(&mut self, obj: &Map<String, Value>, path: &str) {
        use base64::Engine;
        use sha1::Digest;
        let Some(data) = obj.get("data").and_then(Value::as_str) else { return };
        // data that is not base64 is reported by its type's pattern
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else { return };
        if let Some(size) = obj.get("size").and_then(Value::as_u64)
            && size != bytes.len() as u64
        {
            let at = child_path(path, "size");
            self.push(IssueType::Value, &at, format!("size is {size} but the data holds {} bytes", bytes.len()));
        }
        if let Some(hash) = obj.get("hash").and_then(Value::as_str) {
            let sha1 = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(&bytes));
            if hash != sha1 {
                let at = child_path(path, "hash");
                self.push(IssueType::Value, &at, format!("hash is not the SHA-1 of the data in base64 ({sha1})"));
            }
        }
    }

    /// `_birthDate`: the id and extensions of a primitive.
    fn primitive_extension(&mut self, val: &Value, el: &ElementDef, ty: &str, path: &str, value: Option<&Value>) {
        let upath = format!(
            "{}_{}",
            &path[..path.rfind('.').map(|i| i + 1).unwrap_or(0)],
            &path[path.rfind('.').map(|i| i + 1).unwrap_or(0)..]
        );
        if !self.defs.is_primitive(ty) {
            self.push(
                IssueType::Structure,
                &upath,
                format!("'_' properties are only for primitive elements, not {ty}"),
            );
            return;
        }
        let Some(element) = self.defs.type_def("Element") else {
            self.push(IssueType::Exception, path, "the definition of Element is missing".into());
            return;
        };
        let check = |s: &mut Self, v: &Value, p: &str| match v.as_object() {
            Some(o) => s.object(o, element, p, false),
            None => s.push(IssueType::Structure, p, "Primitive extensions must be a JSON object".into()),
        };
        if el.is_many() {
            let Some(items) = val.as_array() else {
                self.push(IssueType::Structure, &upath, "Must be an array, like its element".into());
                return;
            };
            if let Some(vals) = value.and_then(Value::as_array)
                && vals.len() != items.len()
            {
                self.push(IssueType::Structure, &upath, "Must have as many items as its element".into());
            }
            for (i, item) in items.iter().enumerate() {
                let has_value = value.and_then(|v| v.get(i)).is_some_and(|v| !v.is_null());
                if item.is_null() {
                    if !has_value {
                        self.push(
                            IssueType::Structure,
                            &format!("{upath}[{i}]"),
                            "Both value and extension are null".into(),
                        );
                    }
                    continue;
                }
                check(self, item, &item_path(&upath, i));
            }
        } else {
            check(self, val, &upath);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exprs(v: Value) -> Vec<String> {
        validate_resource(&v).into_iter().filter_map(|i| i.expression).collect()
    }

    #[test]
    fn a_valid_patient_passes() {
        let p = json!({"resourceType":"Patient","id":"p1","active":true,"gender":"female","birthDate":"1970-03",
            "name":[{"family":"Doe","given":["Jane","Q"]}],"multipleBirthInteger":2,
            "_birthDate":{"extension":[{"url":"http://example.org/x","valueString":"y"}]},
            "contact":[{"name":{"text":"Kin"}}],
            "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}});
        assert_eq!(validate_resource(&p), vec![]);
    }

    #[test]
    fn a_narrative_links_to_its_own_contained_resources_only() {
        let with = |contained: Value| {
            json!({"resourceType":"Observation","status":"final","code":{"text":"x"},
                "subject":{"reference":"#p"},"contained":contained,
                "text":{"status":"generated",
                    "div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Of <a href=\"#p\">the patient</a></div>"}})
        };
        assert_eq!(validate_resource(&with(json!([{"resourceType":"Patient","id":"p"}]))), vec![]);
        assert_eq!(exprs(with(json!([{"resourceType":"Patient","id":"q"}]))), ["Observation.text.div"]);
    }

    #[test]
    fn each_problem_names_its_element() {
        assert_eq!(exprs(json!({"resourceType":"Patient","birthDate":"1970-13-01"})), ["Patient.birthDate"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","gender":"f"})), ["Patient.gender"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","foo":1})), ["Patient.foo"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","name":{"family":"x"}})), ["Patient.name"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","active":"true"})), ["Patient.active"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","name":[{"given":["a",""]}]})), ["Patient.name[0].given[1]"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","name":[{}]})), ["Patient.name[0]"]);
        assert_eq!(exprs(json!({"resourceType":"Observation","code":{"text":"x"}})), ["Observation.status"]);
        assert_eq!(
            exprs(
                json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","valueBoolean":true})
            ),
            ["Observation.valueBoolean"]
        );
        assert_eq!(
            exprs(
                json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1"}})
            ),
            ["Observation.valueQuantity.value"]
        );
        assert_eq!(
            exprs(json!({"resourceType":"Patient","multipleBirthInteger":1.5})),
            ["Patient.multipleBirthInteger"]
        );
    }

    #[test]
    fn contained_resources_are_validated() {
        let v = json!({"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","active":1}]});
        assert_eq!(exprs(v), ["Patient.contained[0].active"]);
        let v = json!({"resourceType":"Patient","contained":[{"resourceType":"Nope"}]});
        assert_eq!(exprs(v), ["Patient.contained[0].resourceType"]);
    }

    #[test]
    fn unknown_resource_types_are_rejected() {
        assert_eq!(exprs(json!({"resourceType":"Patientx"})), ["Resource.resourceType"]);
        assert_eq!(exprs(json!({"resourceType":"DomainResource"})), ["Resource.resourceType"]);
    }

    #[test]
    fn attachments_say_the_truth_of_their_data_and_comments_are_gone() {
        // "hello": 5 bytes, SHA-1 qvTGHdzF6KLavt4PO0gs2a6pQ00=
        let doc = |att: serde_json::Value| serde_json::json!({"resourceType":"DocumentReference","status":"current","content":[{"attachment":att}]});
        let ok = doc(
            serde_json::json!({"contentType":"text/plain","data":"aGVsbG8=","size":5,"hash":"qvTGHdzF6KLavt4PO0gs2a6pQ00="}),
        );
        assert!(validate_resource(&ok).is_empty(), "{:?}", validate_resource(&ok));
        let size = validate_resource(&doc(serde_json::json!({"contentType":"text/plain","data":"aGVsbG8=","size":6})));
        assert_eq!(size[0].expression, Some("DocumentReference.content[0].attachment.size".to_string()), "{size:?}");
        let hash = validate_resource(&doc(
            serde_json::json!({"contentType":"text/plain","data":"aGVsbG8=","hash":"571ef9c5655840f324e679072ed62b1b95eef8a0"}),
        ));
        assert_eq!(hash[0].expression, Some("DocumentReference.content[0].attachment.hash".to_string()), "{hash:?}");
        // a URL's content is not checked here: nothing to compare with
        assert!(
            validate_resource(&doc(
                serde_json::json!({"url":"http://x/y.pdf","size":6,"hash":"qvTGHdzF6KLavt4PO0gs2a6pQ00="})
            ))
            .is_empty()
        );
        let comments =
            validate_resource(&serde_json::json!({"resourceType":"Patient","fhir_comments":["a DSTU2 comment"]}));
        assert_eq!(comments[0].expression, Some("Patient.fhir_comments".to_string()), "{comments:?}");
    }

    #[test]
    fn primitive_arrays_with_extensions_may_hold_null() {
        let ok = json!({"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"extension":[{"url":"http://x","valueCode":"c"}]}]}]});
        assert_eq!(validate_resource(&ok), vec![]);
        let bad = json!({"resourceType":"Patient","name":[{"given":["a",null]}]});
        assert_eq!(exprs(bad), ["Patient.name[0].given[1]"]);
    }
}

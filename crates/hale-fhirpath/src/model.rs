//! The R4 type model: typing JSON nodes, navigation, type names and inheritance.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::OnceLock;

use hale_fhir::Definitions;
use hale_fhir::definitions::{TypeDef, TypeKind};
use rust_decimal::Decimal;
use serde_json::Value as Json;

use crate::temporal::Temporal;
use crate::value::{Node, Value};

const PRIMITIVES: [&str; 20] = [
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "xhtml",
];

/// The System types.
pub(crate) const SYSTEM_TYPES: [&str; 9] =
    ["Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity", "Any"];

pub(crate) fn defs() -> &'static Definitions {
    Definitions::get()
}

pub(crate) fn is_primitive(t: &str) -> bool {
    PRIMITIVES.contains(&t)
}

/// A FHIR type name as a `'static` string, if the model knows it.
pub(crate) fn fhir_type(name: &str) -> Option<&'static str> {
    if let Some(p) = PRIMITIVES.iter().find(|p| **p == name) {
        return Some(p);
    }
    defs().type_def(name).map(|t| t.name.as_str())
}

pub(crate) fn type_def(name: &str) -> Option<&'static TypeDef> {
    defs().type_def(name)
}

/// Is `name` a resource type (abstract or not)?
pub(crate) fn is_resource_type(name: &str) -> bool {
    type_def(name).is_some_and(|t| t.kind == TypeKind::Resource)
}

/// The type `t` derives from.
pub(crate) fn parent_type(t: &str) -> Option<&'static str> {
    match t {
        "code" | "id" | "markdown" => Some("string"),
        "url" | "canonical" | "oid" | "uuid" => Some("uri"),
        "positiveInt" | "unsignedInt" => Some("integer"),
        "Age" | "Count" | "Distance" | "Duration" | "MoneyQuantity" | "SimpleQuantity" => Some("Quantity"),
        "Resource" | "Element" => None,
        "Bundle" | "Binary" | "Parameters" | "DomainResource" => Some("Resource"),
        "BackboneElement" => Some("Element"),
        _ if is_primitive(t) => Some("Element"),
        _ => match type_def(t)?.kind {
            TypeKind::Resource => Some("DomainResource"),
            TypeKind::Backbone => Some("BackboneElement"),
            TypeKind::Complex => Some("Element"),
        },
    }
}

/// Is `t` the type `ancestor` or derived from it?
pub(crate) fn derives_from(t: &str, ancestor: &str) -> bool {
    let mut cur = Some(t);
    let mut guard = 0;
    while let Some(c) = cur {
        if c == ancestor {
            return true;
        }
        guard += 1;
        if guard > 16 {
            return false;
        }
        cur = parent_type(c);
    }
    false
}

/// `{"resourceType": T}` for the type a `[base/]Type/id[/_history/v]` reference names.
pub(crate) fn reference_stub(reference: &str) -> Option<&'static Json> {
    static STUBS: OnceLock<HashMap<&'static str, Json>> = OnceLock::new();
    let stubs = STUBS.get_or_init(|| {
        defs().resource_types().into_iter().map(|t| (t, serde_json::json!({ "resourceType": t }))).collect()
    });
    let path = reference.split(['?', '#']).next()?;
    let path = match path.find("/_history/") {
        Some(i) => &path[..i],
        None => path,
    };
    let mut segs = path.rsplit('/');
    let id = segs.next()?;
    let t = segs.next()?;
    if id.is_empty() || id.len() > 64 {
        return None;
    }
    stubs.get(t)
}

/// The node for a resource at the root of an evaluation.
pub(crate) fn root_node(json: &Json) -> Value<'_> {
    Value::Node(Node { json: Some(json), ext: None, fhir_type: resource_type_of(json) })
}

fn resource_type_of(json: &Json) -> Option<&'static str> {
    json.get("resourceType").and_then(Json::as_str).and_then(fhir_type)
}

/// The type of an element's value: the declared one, or for `Resource` the actual one.
fn element_type(declared: &'static str, json: Option<&Json>) -> Option<&'static str> {
    if matches!(declared, "Resource" | "DomainResource")
        && let Some(t) = json.and_then(resource_type_of)
    {
        return Some(t);
    }
    Some(declared)
}

/// Pushes the values of property `key` (and its `_key` sibling) as nodes typed `ty`.
fn push_property<'a>(
    obj: &'a serde_json::Map<String, Json>,
    key: &str,
    ty: Option<&'static str>,
    out: &mut Vec<Value<'a>>,
) {
    let val = obj.get(key);
    // only primitives have a `_key` sibling
    let ext = match ty {
        Some(t) if !is_primitive(t) => None,
        _ => obj.get(&format!("_{key}")),
    };
    let typed = |j: Option<&'a Json>| match ty {
        Some(t) => element_type(t, j),
        None => j.and_then(resource_type_of),
    };
    match (val, ext) {
        (Some(Json::Array(items)), e) => {
            let exts = e.and_then(Json::as_array);
            for (i, item) in items.iter().enumerate() {
                let x = exts.and_then(|xs| xs.get(i)).filter(|x| !x.is_null());
                let j = if item.is_null() { None } else { Some(item) };
                if j.is_none() && x.is_none() {
                    continue;
                }
                out.push(Value::Node(Node { json: j, ext: x, fhir_type: typed(j) }));
            }
        }
        (None | Some(Json::Null), Some(Json::Array(xs))) => {
            for x in xs.iter().filter(|x| !x.is_null()) {
                out.push(Value::Node(Node { json: None, ext: Some(x), fhir_type: typed(None) }));
            }
        }
        (v, x) => {
            let j = v.filter(|v| !v.is_null());
            let x = x.filter(|x| !x.is_null());
            if j.is_none() && x.is_none() {
                return;
            }
            out.push(Value::Node(Node { json: j, ext: x, fhir_type: typed(j) }));
        }
    }
}

/// `node.name`: the children of a node named `name` (choice elements by their base name).
/// The definition navigation uses for a node's type (`Element` for primitives).
fn nav_def(t: Option<&'static str>) -> Option<&'static TypeDef> {
    let t = t?;
    if is_primitive(t) { type_def("Element") } else { type_def(t) }
}

pub(crate) fn navigate<'a>(node: &Node<'a>, name: &str, out: &mut Vec<Value<'a>>) {
    let Some(obj) = node.object() else { return };
    let td = nav_def(node.fhir_type);
    if let Some(td) = td {
        if let Some(el) = td.elements.iter().find(|e| e.base_name() == name) {
            if el.is_choice() {
                // the object names the type it carries: `valueQuantity`, `_valueString`
                for key in obj.keys() {
                    let k = key.strip_prefix('_').unwrap_or(key);
                    // `_valueString` beside `valueString` is the same property
                    if key.starts_with('_') && obj.contains_key(k) {
                        continue;
                    }
                    if let Some(t) = td.choice_type(k, name) {
                        push_property(obj, k, Some(t), out);
                    }
                }
            } else {
                push_property(obj, name, el.types.first().map(String::as_str), out);
            }
            return;
        }
        // not an element of the type: the JSON name of a choice (`valueQuantity`) still types
        if let Some((_, t)) = td.property(name) {
            push_property(obj, name, Some(t), out);
            return;
        }
    }
    if obj.contains_key(name) || obj.contains_key(&format!("_{name}")) {
        let ty = matches!(name, "extension" | "modifierExtension").then_some("Extension");
        push_property(obj, name, ty, out);
    }
}

/// All children of a node, in document order.
pub(crate) fn children<'a>(node: &Node<'a>, out: &mut Vec<Value<'a>>) {
    let Some(obj) = node.object() else { return };
    let td = nav_def(node.fhir_type);
    for key in obj.keys() {
        if key == "resourceType" {
            continue;
        }
        let base = match key.strip_prefix('_') {
            Some(b) => {
                if obj.contains_key(b) {
                    continue;
                }
                b
            }
            None => key.as_str(),
        };
        let ty = td.and_then(|td| td.property(base)).map(|(_, t)| t);
        push_property(obj, base, ty, out);
    }
}

/// The System value of a node, if it has one.
pub(crate) fn node_to_system<'a>(n: &Node<'a>) -> Option<Value<'a>> {
    let j = n.json?;
    let ty = n.fhir_type;
    if let Json::Object(m) = j {
        if ty.is_some_and(|t| derives_from(t, "Quantity")) {
            let value = number(m.get("value")?)?;
            let ucum = m.get("system").and_then(Json::as_str) == Some("http://unitsofmeasure.org");
            let unit = match (m.get("code").and_then(Json::as_str), m.get("unit").and_then(Json::as_str)) {
                (Some(c), _) if ucum => c.to_string(),
                (_, Some(u)) => u.to_string(),
                (Some(c), None) => c.to_string(),
                (None, None) => "1".to_string(),
            };
            return Some(Value::Quantity { value, unit });
        }
        return None;
    }
    match (ty, j) {
        (_, Json::Bool(b)) => Some(Value::Boolean(*b)),
        (Some("decimal"), Json::Number(_)) => number(j).map(Value::Decimal),
        (_, Json::Number(x)) => {
            let s = x.to_string();
            match s.parse::<i64>() {
                Ok(i) => Some(Value::Integer(i)),
                Err(_) => number(j).map(Value::Decimal),
            }
        }
        (Some("date"), Json::String(s)) => {
            Some(Temporal::parse_date(s).map(Value::temporal).unwrap_or_else(|| Value::String(s.clone())))
        }
        (Some("dateTime" | "instant"), Json::String(s)) => {
            Some(Temporal::parse_fhir_datetime(s).map(Value::temporal).unwrap_or_else(|| Value::String(s.clone())))
        }
        (Some("time"), Json::String(s)) => {
            Some(Temporal::parse_time(s).map(Value::temporal).unwrap_or_else(|| Value::String(s.clone())))
        }
        (Some("integer" | "positiveInt" | "unsignedInt"), Json::String(s)) => {
            Some(s.parse::<i64>().map(Value::Integer).unwrap_or_else(|_| Value::String(s.clone())))
        }
        (_, Json::String(s)) => Some(Value::String(s.clone())),
        _ => None,
    }
}

/// A JSON number (or numeric string) as an exact decimal.
pub(crate) fn number(j: &Json) -> Option<Decimal> {
    let s = match j {
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.clone(),
        _ => return None,
    };
    parse_decimal(&s)
}

pub(crate) fn parse_decimal(s: &str) -> Option<Decimal> {
    if s.contains(['e', 'E']) { Decimal::from_scientific(s).ok() } else { Decimal::from_str(s).ok() }
}

/// A type named in `is`/`as`/`ofType`, resolved against the System and FHIR models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeRef {
    System(&'static str),
    Fhir(&'static str),
    /// A name both models know (`Quantity` without a namespace).
    Either(&'static str, &'static str),
}

pub(crate) fn resolve_type(namespace: Option<&str>, name: &str) -> Option<TypeRef> {
    let sys = SYSTEM_TYPES.iter().find(|s| **s == name).copied();
    match namespace {
        Some("System") => sys.map(TypeRef::System),
        Some("FHIR") => fhir_type(name).map(TypeRef::Fhir),
        Some(_) => None,
        None => match (sys, fhir_type(name)) {
            (Some(s), Some(f)) => Some(TypeRef::Either(s, f)),
            (Some(s), None) => Some(TypeRef::System(s)),
            (None, Some(f)) => Some(TypeRef::Fhir(f)),
            (None, None) => None,
        },
    }
}

/// Is the value of type `t`? (`exact`: for `as`/`ofType`, where a primitive must be of
/// exactly that type.)
pub(crate) fn value_is(v: &Value<'_>, t: TypeRef, exact: bool) -> bool {
    let (sys, fhir) = match t {
        TypeRef::System(s) => (Some(s), None),
        TypeRef::Fhir(f) => (None, Some(f)),
        TypeRef::Either(s, f) => (Some(s), Some(f)),
    };
    match v {
        Value::Node(n) => match (n.fhir_type, fhir) {
            (Some(nt), Some(f)) => {
                // the R4 suite wants `code` not to be a `string` for as()/ofType(); complex
                // and resource types keep their subtypes (`ofType(Resource)`, `as Quantity`
                // for an Age)
                if exact && is_primitive(f) { nt == f } else { derives_from(nt, f) }
            }
            _ => false,
        },
        other => {
            let (_, name) = other.type_name();
            sys.is_some_and(|s| s == name || s == "Any")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigates_choice_and_primitives() {
        let obs = serde_json::json!({"resourceType": "Observation", "valueQuantity": {"value": 185, "unit": "lbs"},
            "issued": "2013-04-03T15:30:10.01+11:00", "_issued": {"id": "x"}});
        let Value::Node(root) = root_node(&obs) else { panic!() };
        let mut out = Vec::new();
        navigate(&root, "value", &mut out);
        assert!(matches!(&out[..], [Value::Node(Node { fhir_type: Some("Quantity"), .. })]));
        assert!(matches!(out[0].to_system(), Some(Value::Quantity { .. })));
        out.clear();
        navigate(&root, "issued", &mut out);
        let Value::Node(n) = &out[0] else { panic!() };
        assert_eq!(n.fhir_type, Some("instant"));
        assert!(n.ext.is_some());
        assert!(matches!(out[0].to_system(), Some(Value::DateTime(_))));
        assert!(derives_from("code", "string") && derives_from("Age", "Quantity") && !derives_from("uri", "url"));
        assert!(derives_from("Patient", "Resource") && derives_from("Patient.contact", "Element"));
        let stub = |r: &str| reference_stub(r).and_then(|j| j.get("resourceType")).and_then(Json::as_str);
        assert_eq!(stub("Patient/123"), Some("Patient"));
        assert_eq!(stub("http://x.org/fhir/Observation/o1/_history/2"), Some("Observation"));
        assert_eq!(stub("Nothing/1"), None);
        assert_eq!(stub("urn:uuid:1234"), None);
    }
}

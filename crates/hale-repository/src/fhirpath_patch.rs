//! FHIRPath Patch (<https://hl7.org/fhir/R4/fhirpatch.html>): a `Parameters` resource of
//! `operation`s (`add`, `insert`, `delete`, `replace`, `move`) whose `path` is a FHIRPath
//! expression. Each path is evaluated with `hale-fhirpath` on the resource as the earlier
//! operations left it; the nodes it selects are located in the JSON by identity, then
//! changed. The result is validated by the caller before it is stored.

use hale_fhir::definitions::Definitions;
use hale_fhir::{Issue, IssueType};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// One step from a JSON value to a child.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn bad(at: String, msg: impl Into<String>) -> Error {
    Error::invalid(Issue::error(IssueType::Invalid, msg.into()).at(at))
}

fn unprocessable(at: String, msg: impl Into<String>) -> Error {
    Error::Invalid(hale_fhir::OperationOutcome::single(Issue::error(IssueType::Processing, msg.into()).at(at)))
}

/// The path from `root` to the value at address `target`, if it is inside `root`.
fn locate(root: &Value, target: *const Value) -> Option<Vec<Seg>> {
    if std::ptr::eq(root, target) {
        return Some(Vec::new());
    }
    match root {
        Value::Object(o) => o.iter().find_map(|(k, v)| {
            locate(v, target).map(|mut p| {
                p.insert(0, Seg::Key(k.clone()));
                p
            })
        }),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| {
            locate(v, target).map(|mut p| {
                p.insert(0, Seg::Index(i));
                p
            })
        }),
        _ => None,
    }
}

fn get_mut<'a>(root: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = root;
    for s in path {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Object(o)) => o.get_mut(k)?,
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A node the path selected: where it is and its FHIR type.
struct Found {
    path: Vec<Seg>,
    fhir_type: Option<&'static str>,
}

fn select(resource: &Value, expr: &str, at: &str) -> Result<Vec<Found>> {
    let e = hale_fhirpath::Expression::parse(expr)
        .map_err(|err| bad(format!("{at}.path"), format!("'{expr}' is not a FHIRPath expression: {}", err.message)))?;
    let ctx = hale_fhirpath::Context::new();
    let values = e
        .evaluate(resource, &ctx)
        .map_err(|err| unprocessable(format!("{at}.path"), format!("'{expr}' cannot be evaluated: {}", err.message)))?;
    values
        .into_iter()
        .map(|v| match v {
            hale_fhirpath::Value::Node(n) => {
                let json = n.json.ok_or_else(|| {
                    unprocessable(format!("{at}.path"), format!("'{expr}' selects an element with no value"))
                })?;
                let path = locate(resource, json).ok_or_else(|| {
                    unprocessable(format!("{at}.path"), format!("'{expr}' selects something outside the resource"))
                })?;
                Ok(Found { path, fhir_type: n.fhir_type })
            }
            _ => Err(unprocessable(format!("{at}.path"), format!("'{expr}' does not select elements of the resource"))),
        })
        .collect()
}

fn one(found: Vec<Found>, expr: &str, at: &str) -> Result<Found> {
    let n = found.len();
    let mut it = found.into_iter();
    match (it.next(), n) {
        (Some(f), 1) => Ok(f),
        (_, 0) => Err(unprocessable(format!("{at}.path"), format!("'{expr}' selects nothing"))),
        _ => Err(unprocessable(format!("{at}.path"), format!("'{expr}' selects {n} elements; one is needed"))),
    }
}

/// The element definition of `name` on type `ty`: (repeats, its type).
fn element(ty: Option<&str>, name: &str) -> Option<(bool, String)> {
    let def = Definitions::get().type_def(ty?)?;
    let (el, t) = def.property(name)?;
    Some((el.is_many(), t.to_string()))
}

/// The JSON of a `value` part: its `value[x]`, or an object of its parts.
fn value_json(part: &Value, ty: Option<&str>, at: &str) -> Result<Value> {
    if let Some(o) = part.as_object() {
        if let Some((_, v)) = o.iter().find(|(k, _)| k.starts_with("value")) {
            return Ok(v.clone());
        }
        if let Some(Value::Array(parts)) = o.get("part") {
            let mut out = Map::new();
            for (i, p) in parts.iter().enumerate() {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    return Err(bad(format!("{at}.part[{i}].name"), "Each part of a value needs a name"));
                }
                let child = element(ty, name);
                let v = value_json(p, child.as_ref().map(|c| c.1.as_str()), &format!("{at}.part[{i}]"))?;
                match (child.map(|c| c.0).unwrap_or(false), out.get_mut(name)) {
                    (_, Some(Value::Array(a))) => a.push(v),
                    (true, None) => {
                        out.insert(name.to_string(), Value::Array(vec![v]));
                    }
                    (false, None) => {
                        out.insert(name.to_string(), v);
                    }
                    (_, Some(prev)) => {
                        let first = prev.take();
                        *prev = Value::Array(vec![first, v]);
                    }
                }
            }
            return Ok(Value::Object(out));
        }
    }
    Err(bad(at.to_string(), "A value needs value[x] or parts"))
}

/// The array a list path designates, and its items' type: from the selected items, or
/// when there are none, from the parent (`X.name` where X selects one element).
fn list(resource: &Value, expr: &str, at: &str) -> Result<(Vec<Seg>, Option<String>)> {
    let found = select(resource, expr, at)?;
    if let Some(first) = found.first() {
        let (last, parent) = first.path.split_last().ok_or_else(|| bad(format!("{at}.path"), "not a list"))?;
        if !matches!(last, Seg::Index(_)) || found.iter().any(|f| f.path.split_last().map(|p| p.1) != Some(parent)) {
            return Err(unprocessable(format!("{at}.path"), format!("'{expr}' is not a list of repeating elements")));
        }
        return Ok((parent.to_vec(), first.fhir_type.map(str::to_string)));
    }
    let (parent_expr, name) = expr
        .rsplit_once('.')
        .filter(|(_, n)| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .ok_or_else(|| unprocessable(format!("{at}.path"), format!("'{expr}' selects nothing")))?;
    let parent = one(select(resource, parent_expr, at)?, parent_expr, at)?;
    let item_type = element(parent.fhir_type, name).map(|e| e.1);
    let mut path = parent.path;
    path.push(Seg::Key(name.to_string()));
    Ok((path, item_type))
}

fn array_at<'a>(resource: &'a mut Value, path: &[Seg], at: &str) -> Result<&'a mut Vec<Value>> {
    let (last, parent) = path.split_last().ok_or_else(|| bad(format!("{at}.path"), "not a list"))?;
    let holder = get_mut(resource, parent).ok_or_else(|| bad(format!("{at}.path"), "not found"))?;
    let Seg::Key(k) = last else { return Err(bad(format!("{at}.path"), "not a list")) };
    let obj = holder.as_object_mut().ok_or_else(|| bad(format!("{at}.path"), "not an element"))?;
    let slot = obj.entry(k.clone()).or_insert_with(|| Value::Array(Vec::new()));
    slot.as_array_mut().ok_or_else(|| unprocessable(format!("{at}.path"), "not a list of repeating elements"))
}

fn index_of(parts: &Map<String, Value>, name: &str, at: &str) -> Result<usize> {
    parts
        .get(name)
        .and_then(|p| p.get("valueInteger"))
        .and_then(Value::as_u64)
        .map(|i| i as usize)
        .ok_or_else(|| bad(format!("{at}.{name}"), format!("'{name}' must be a non-negative valueInteger")))
}

/// Removes empty arrays and objects left behind on the way to `path`.
fn prune(resource: &mut Value, path: &[Seg]) {
    for depth in (1..=path.len()).rev() {
        let (last, parent) =
            path[..depth].split_last().map(|(l, p)| (l.clone(), p.to_vec())).unwrap_or((Seg::Index(0), vec![]));
        let Some(holder) = get_mut(resource, &parent) else { return };
        let empty = match (&last, &*holder) {
            (Seg::Key(k), Value::Object(o)) => match o.get(k) {
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(m)) => m.is_empty(),
                _ => false,
            },
            (Seg::Index(i), Value::Array(a)) => matches!(a.get(*i), Some(Value::Object(m)) if m.is_empty()),
            _ => false,
        };
        if !empty {
            return;
        }
        match (last, holder) {
            (Seg::Key(k), Value::Object(o)) => {
                o.shift_remove(&k);
            }
            (Seg::Index(i), Value::Array(a)) => {
                a.remove(i);
            }
            _ => return,
        }
    }
}

/// Applies a FHIRPath Patch `Parameters` resource to `resource`.
pub(crate) fn apply(resource: &Value, patch: &Value) -> Result<Value> {
    if patch.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad("Parameters".into(), "A FHIRPath Patch is a Parameters resource"));
    }
    let mut out = resource.clone();
    // a patch with no operation is allowed (R4 FHIRPath Patch): the resource as it is
    let ops = patch.get("parameter").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, op) in ops.iter().enumerate() {
        let at = format!("Parameters.parameter[{i}]");
        if op.get("name").and_then(Value::as_str) != Some("operation") {
            return Err(bad(format!("{at}.name"), "Each parameter of a FHIRPath Patch is an 'operation'"));
        }
        let mut parts: Map<String, Value> = Map::new();
        for p in op.get("part").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = p.get("name").and_then(Value::as_str) {
                parts.insert(n.to_string(), p.clone());
            }
        }
        let text = |name: &str| -> Option<String> {
            parts.get(name).and_then(|p| {
                p.as_object()?
                    .iter()
                    .find(|(k, _)| k.starts_with("value"))
                    .and_then(|(_, v)| v.as_str())
                    .map(str::to_string)
            })
        };
        let kind = text("type").ok_or_else(|| bad(format!("{at}.part"), "The operation needs a 'type'"))?;
        let expr = text("path").ok_or_else(|| bad(format!("{at}.part"), "The operation needs a 'path'"))?;
        let value = |ty: Option<&str>| -> Result<Value> {
            let p = parts.get("value").ok_or_else(|| bad(format!("{at}.part"), format!("'{kind}' needs a 'value'")))?;
            value_json(p, ty, &format!("{at}.part[value]"))
        };
        match kind.as_str() {
            "replace" => {
                let f = one(select(&out, &expr, &at)?, &expr, &at)?;
                let v = value(f.fhir_type)?;
                if let Some(slot) = get_mut(&mut out, &f.path) {
                    *slot = v;
                }
            }
            "delete" => {
                let found = select(&out, &expr, &at)?;
                if found.len() > 1 {
                    return Err(unprocessable(
                        format!("{at}.path"),
                        format!("'{expr}' selects {} elements", found.len()),
                    ));
                }
                if let Some(f) = found.into_iter().next() {
                    if let Some((last, parent)) = f.path.split_last() {
                        match (last, get_mut(&mut out, parent)) {
                            (Seg::Key(k), Some(Value::Object(o))) => {
                                o.shift_remove(k);
                            }
                            (Seg::Index(ix), Some(Value::Array(a))) => {
                                a.remove(*ix);
                            }
                            _ => {}
                        }
                        prune(&mut out, parent);
                    } else {
                        return Err(unprocessable(format!("{at}.path"), "The resource itself cannot be deleted"));
                    }
                }
            }
            "add" => {
                let name = text("name").ok_or_else(|| bad(format!("{at}.part"), "'add' needs a 'name'"))?;
                let f = one(select(&out, &expr, &at)?, &expr, &at)?;
                let el = element(f.fhir_type, &name);
                let v = value(el.as_ref().map(|e| e.1.as_str()))?;
                let holder = get_mut(&mut out, &f.path).and_then(Value::as_object_mut).ok_or_else(|| {
                    unprocessable(format!("{at}.path"), format!("'{expr}' is not an element with children"))
                })?;
                match (holder.get_mut(&name), el.map(|e| e.0)) {
                    (Some(Value::Array(a)), _) => a.push(v),
                    (None, Some(true)) => {
                        holder.insert(name, Value::Array(vec![v]));
                    }
                    (None, _) => {
                        holder.insert(name, v);
                    }
                    (Some(_), _) => {
                        return Err(unprocessable(
                            format!("{at}.part"),
                            format!("'{name}' is already present at '{expr}'"),
                        ));
                    }
                }
            }
            "insert" => {
                let index = index_of(&parts, "index", &at)?;
                let (path, item_type) = list(&out, &expr, &at)?;
                let v = value(item_type.as_deref())?;
                let a = array_at(&mut out, &path, &at)?;
                if index > a.len() {
                    return Err(unprocessable(
                        format!("{at}.index"),
                        format!("index {index} is beyond the list's {} items", a.len()),
                    ));
                }
                a.insert(index, v);
            }
            "move" => {
                let source = index_of(&parts, "source", &at)?;
                let destination = index_of(&parts, "destination", &at)?;
                let (path, _) = list(&out, &expr, &at)?;
                let a = array_at(&mut out, &path, &at)?;
                if source >= a.len() || destination >= a.len() {
                    return Err(unprocessable(
                        format!("{at}.part"),
                        format!("source and destination must be below {}", a.len()),
                    ));
                }
                let item = a.remove(source);
                a.insert(destination, item);
            }
            other => {
                return Err(bad(
                    format!("{at}.part"),
                    format!(
                        "'{}' is not an operation type (add, insert, delete, replace, move)",
                        other.chars().take(32).collect::<String>()
                    ),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(kind: &str, path: &str, extra: Vec<Value>) -> Value {
        let mut part = vec![json!({"name":"type","valueCode":kind}), json!({"name":"path","valueString":path})];
        part.extend(extra);
        json!({"name":"operation","part":part})
    }

    fn patch(ops: Vec<Value>) -> Value {
        json!({"resourceType":"Parameters","parameter":ops})
    }

    fn patient() -> Value {
        json!({"resourceType":"Patient","id":"p","active":true,"birthDate":"1970-01-01",
            "name":[{"family":"Doe","given":["Jane","Q"]}],"identifier":[{"value":"a"},{"value":"b"},{"value":"c"}]})
    }

    #[test]
    fn replace_add_delete_insert_move() {
        let p = patient();
        let r = apply(
            &p,
            &patch(vec![op("replace", "Patient.birthDate", vec![json!({"name":"value","valueDate":"1971-02-03"})])]),
        )
        .unwrap();
        assert_eq!(r["birthDate"], "1971-02-03");
        let r = apply(
            &p,
            &patch(vec![op(
                "add",
                "Patient",
                vec![json!({"name":"name","valueString":"gender"}), json!({"name":"value","valueCode":"female"})],
            )]),
        )
        .unwrap();
        assert_eq!(r["gender"], "female");
        // add to a repeating element appends; a complex value from parts
        let r = apply(&p, &patch(vec![op("add", "Patient", vec![json!({"name":"name","valueString":"name"}),
            json!({"name":"value","part":[{"name":"family","valueString":"Roe"},{"name":"given","valueString":"Ann"}]})])])).unwrap();
        assert_eq!(r["name"][1], json!({"family":"Roe","given":["Ann"]}));
        let r = apply(&p, &patch(vec![op("delete", "Patient.name.given[1]", vec![])])).unwrap();
        assert_eq!(r["name"][0]["given"], json!(["Jane"]));
        let r = apply(&p, &patch(vec![op("delete", "Patient.name.given", vec![])]));
        assert!(r.is_err(), "two nodes");
        let r = apply(&p, &patch(vec![op("delete", "Patient.telecom", vec![])])).unwrap();
        assert_eq!(r, p, "deleting nothing is no error");
        let r = apply(
            &p,
            &patch(vec![
                op("delete", "Patient.name[0].family", vec![]),
                op("delete", "Patient.name[0].given[0]", vec![]),
                op("delete", "Patient.name[0].given[0]", vec![]),
            ]),
        )
        .unwrap();
        assert!(r.get("name").is_none(), "empty elements are pruned: {r}");
        let r = apply(
            &p,
            &patch(vec![op(
                "insert",
                "Patient.identifier",
                vec![json!({"name":"index","valueInteger":1}), json!({"name":"value","valueIdentifier":{"value":"x"}})],
            )]),
        )
        .unwrap();
        let vals: Vec<&str> =
            r["identifier"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
        assert_eq!(vals, ["a", "x", "b", "c"]);
        let r = apply(
            &p,
            &patch(vec![op(
                "insert",
                "Patient.telecom",
                vec![
                    json!({"name":"index","valueInteger":0}),
                    json!({"name":"value","valueContactPoint":{"system":"phone","value":"1"}}),
                ],
            )]),
        )
        .unwrap();
        assert_eq!(r["telecom"][0]["value"], "1", "insert into an absent list");
        let r = apply(
            &p,
            &patch(vec![op(
                "move",
                "Patient.identifier",
                vec![json!({"name":"source","valueInteger":0}), json!({"name":"destination","valueInteger":2})],
            )]),
        )
        .unwrap();
        let vals: Vec<&str> =
            r["identifier"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
        assert_eq!(vals, ["b", "c", "a"]);
        let r = apply(
            &p,
            &patch(vec![op(
                "replace",
                "Patient.identifier.where(value = 'b').value",
                vec![json!({"name":"value","valueString":"B"})],
            )]),
        )
        .unwrap();
        assert_eq!(r["identifier"][1]["value"], "B");
    }

    #[test]
    fn a_patch_with_no_operation_changes_nothing() {
        let p = patient();
        assert_eq!(apply(&p, &patch(vec![])).unwrap(), p);
        assert_eq!(apply(&p, &json!({"resourceType":"Parameters"})).unwrap(), p);
    }

    #[test]
    fn bad_patches_are_errors() {
        let p = patient();
        for bad in [
            json!({"resourceType":"Patient"}),
            patch(vec![op("explode", "Patient", vec![])]),
            patch(vec![op("replace", "Patient.(", vec![json!({"name":"value","valueString":"x"})])]),
            patch(vec![op("replace", "Patient.gender", vec![json!({"name":"value","valueCode":"x"})])]),
            patch(vec![op("replace", "Patient.birthDate", vec![])]),
            patch(vec![op(
                "add",
                "Patient",
                vec![json!({"name":"name","valueString":"active"}), json!({"name":"value","valueBoolean":false})],
            )]),
            patch(vec![op(
                "insert",
                "Patient.identifier",
                vec![json!({"name":"index","valueInteger":9}), json!({"name":"value","valueIdentifier":{"value":"x"}})],
            )]),
            patch(vec![op("move", "Patient.identifier", vec![json!({"name":"source","valueInteger":0})])]),
        ] {
            assert!(apply(&p, &bad).is_err(), "{bad}");
        }
    }
}

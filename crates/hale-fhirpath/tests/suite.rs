//! The official FHIRPath conformance suite for R4 (`fhirpath/tests-fhir-r4.xml` in the
//! shared data). Inputs are read from their JSON form where the shared data has it and
//! otherwise converted from FHIR XML with the small converter below (typed by the R4
//! model). Skips, with a message, when the shared data is absent.
//!
//! `FHIRPATH_VERBOSE=1` lists the failures; `FHIRPATH_ONLY=name` runs the tests whose
//! name contains `name`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hale_fhir::Definitions;
use hale_fhirpath::{Context, Expression, Value};
use serde_json::{Map, Value as Json};

/// The suite must not get worse than this.
const PASS_FLOOR: usize = 935;

// ---------------------------------------------------------------------------------------
// FHIR XML -> FHIR JSON

const FHIR_NS: &str = "http://hl7.org/fhir";

fn element_info(type_name: &str, prop: &str) -> Option<(String, bool)> {
    let td = Definitions::get().type_def(type_name)?;
    let (el, t) = td.property(prop)?;
    Some((t.to_string(), el.is_many()))
}

fn primitive_json(t: &str, v: &str) -> Json {
    match t {
        "boolean" => match v {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            _ => Json::String(v.to_string()),
        },
        "integer" | "positiveInt" | "unsignedInt" | "decimal" => {
            serde_json::from_str::<Json>(v).ok().filter(Json::is_number).unwrap_or_else(|| Json::String(v.to_string()))
        }
        _ => Json::String(v.to_string()),
    }
}

/// Converts a resource element (`<Patient xmlns="http://hl7.org/fhir">`).
fn xml_resource(node: roxmltree::Node, src: &str) -> Json {
    let rt = node.tag_name().name().to_string();
    let mut obj = Map::new();
    obj.insert("resourceType".into(), Json::String(rt.clone()));
    xml_children(node, &rt, src, &mut obj);
    Json::Object(obj)
}

/// Converts the children of `node` (of FHIR type `type_name`) into `obj`.
fn xml_children(node: roxmltree::Node, type_name: &str, src: &str, obj: &mut Map<String, Json>) {
    if let Some(id) = node.attribute("id") {
        obj.insert("id".into(), Json::String(id.to_string()));
    }
    if let Some(url) = node.attribute("url") {
        obj.insert("url".into(), Json::String(url.to_string()));
    }
    // property -> (values, extensions of primitives, is_many)
    let mut order: Vec<String> = Vec::new();
    let mut props: HashMap<String, (Vec<Json>, Vec<Json>, bool)> = HashMap::new();
    for child in node.children().filter(|c| c.is_element()) {
        let name = child.tag_name().name().to_string();
        let (t, many) = element_info(type_name, &name).unwrap_or_else(|| ("string".to_string(), false));
        let entry = props.entry(name.clone()).or_insert_with(|| {
            order.push(name.clone());
            (Vec::new(), Vec::new(), many)
        });
        if t == "xhtml" || child.tag_name().namespace() == Some("http://www.w3.org/1999/xhtml") {
            entry.0.push(Json::String(src[child.range()].to_string()));
            entry.1.push(Json::Null);
            continue;
        }
        if t == "Resource" {
            let inner = child.children().find(|c| c.is_element());
            entry.0.push(inner.map(|i| xml_resource(i, src)).unwrap_or(Json::Null));
            entry.1.push(Json::Null);
            continue;
        }
        let first = t.chars().next().unwrap_or('a');
        if first.is_ascii_lowercase() {
            // primitive: value attribute, id and extensions in `_name`
            let value = child.attribute("value").map(|v| primitive_json(&t, v)).unwrap_or(Json::Null);
            let mut ext = Map::new();
            xml_children(child, "Element", src, &mut ext);
            entry.0.push(value);
            entry.1.push(if ext.is_empty() { Json::Null } else { Json::Object(ext) });
        } else {
            let mut o = Map::new();
            xml_children(child, &t, src, &mut o);
            entry.0.push(Json::Object(o));
            entry.1.push(Json::Null);
        }
    }
    for name in order {
        let (mut values, mut exts, many) = props.remove(&name).unwrap_or_default();
        let has_ext = exts.iter().any(|e| !e.is_null());
        let has_value = values.iter().any(|v| !v.is_null());
        if many || values.len() > 1 {
            if has_value {
                obj.insert(name.clone(), Json::Array(values));
            }
            if has_ext {
                obj.insert(format!("_{name}"), Json::Array(exts));
            }
        } else {
            if has_value {
                obj.insert(name.clone(), values.swap_remove(0));
            }
            if has_ext {
                obj.insert(format!("_{name}"), exts.swap_remove(0));
            }
        }
    }
}

fn xml_to_json(src: &str) -> Result<Json, String> {
    let doc = roxmltree::Document::parse(src).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(FHIR_NS) {
        return Err("not FHIR XML".into());
    }
    Ok(xml_resource(root, src))
}

// ---------------------------------------------------------------------------------------
// the suite

struct Inputs {
    dir: PathBuf,
    cache: HashMap<String, Option<Json>>,
}

impl Inputs {
    fn get(&mut self, file: &str) -> Option<&Json> {
        if !self.cache.contains_key(file) {
            let loaded = load_input(&self.dir, file);
            self.cache.insert(file.to_string(), loaded);
        }
        self.cache.get(file).and_then(Option::as_ref)
    }
}

fn load_input(dir: &Path, file: &str) -> Option<Json> {
    let stem = file.trim_end_matches(".xml").trim_end_matches(".json");
    // the suite names XML files; some JSON copies differ (observation-example has no extension)
    if file.ends_with(".xml")
        && let Ok(text) = std::fs::read_to_string(dir.join("fhirpath/input").join(file))
    {
        return xml_to_json(&text).ok();
    }
    for json in [
        dir.join("fhirpath/input").join(format!("{stem}.json")),
        dir.join("fhir-r4-examples").join(format!("{stem}.json")),
    ] {
        if let Ok(text) = std::fs::read_to_string(&json) {
            return serde_json::from_str(&text).ok();
        }
    }
    None
}

/// (type, text) of a result as the suite writes outputs.
fn render(v: &Value) -> (String, String) {
    let sys = v.to_system();
    let ty = match v {
        Value::Node(n) => n.fhir_type.unwrap_or("").to_string(),
        other => other.type_name().1,
    };
    let text = match sys {
        Some(Value::Date(t)) | Some(Value::DateTime(t)) => format!("@{t}"),
        Some(Value::Time(t)) => format!("@T{t}"),
        Some(Value::Quantity { value, unit }) => format!("{value} '{unit}'"),
        Some(other) => other.to_string(),
        None => v.to_string(),
    };
    (ty, text)
}

fn type_matches(expected: &str, got: &str) -> bool {
    let e = expected.to_ascii_lowercase();
    let g = got.to_ascii_lowercase();
    e == g
        || (e == "string" && matches!(g.as_str(), "code" | "id" | "uri" | "markdown" | "url" | "canonical"))
        || (e == "datetime" && g == "instant")
        || (e == "integer" && matches!(g.as_str(), "positiveint" | "unsignedint"))
}

fn output_matches(expected: &(Option<String>, String), got: &Value) -> bool {
    let (ty, text) = render(got);
    let (ety, etext) = expected;
    let etext = etext.trim();
    if let Some(et) = ety {
        if !type_matches(et, &ty) {
            return false;
        }
        if et == "decimal"
            && let (Ok(a), Ok(b)) = (etext.parse::<rust_decimal::Decimal>(), text.parse::<rust_decimal::Decimal>())
        {
            return a == b;
        }
    }
    text == etext
}

struct Case {
    name: String,
    group: String,
    expression: String,
    invalid: bool,
    input: Option<String>,
    outputs: Vec<(Option<String>, String)>,
    predicate: bool,
    ordered: bool,
    check_ordered: bool,
}

fn read_cases(xml: &str) -> Vec<Case> {
    let doc = roxmltree::Document::parse(xml).expect("the suite is XML");
    let mut cases = Vec::new();
    for group in doc.root_element().children().filter(|c| c.has_tag_name("group")) {
        let gname = group.attribute("name").unwrap_or("").to_string();
        for (i, t) in group.children().filter(|c| c.has_tag_name("test")).enumerate() {
            let Some(expr) = t.children().find(|c| c.has_tag_name("expression")) else {
                continue;
            };
            let outputs = t
                .children()
                .filter(|c| c.has_tag_name("output"))
                .map(|o| (o.attribute("type").map(str::to_string), o.text().unwrap_or("").to_string()))
                .collect();
            cases.push(Case {
                name: t.attribute("name").map(str::to_string).unwrap_or_else(|| format!("{gname}#{i}")),
                group: gname.clone(),
                expression: expr.text().unwrap_or("").to_string(),
                invalid: expr.attribute("invalid").is_some(),
                input: t.attribute("inputfile").map(str::to_string),
                outputs,
                predicate: t.attribute("predicate") == Some("true"),
                ordered: t.attribute("ordered") != Some("false"),
                check_ordered: t.attribute("checkOrderedFunctions") == Some("true"),
            });
        }
    }
    cases
}

/// Why a case cannot run, if it cannot. Every input of the suite converts from XML (the
/// converter handles extensions on primitives, contained resources and the narrative), so
/// no case depends on XML-only features; only a missing input file skips.
fn skip_reason(c: &Case, inputs: &mut Inputs) -> Option<&'static str> {
    match &c.input {
        Some(f) if inputs.get(f).is_none() => Some("input file missing or unreadable"),
        _ => None,
    }
}

fn run_case(c: &Case, inputs: &mut Inputs) -> Result<(), String> {
    let empty = Json::Object(Map::new());
    let resource = match &c.input {
        Some(f) => inputs.get(f).ok_or_else(|| format!("input {f} not readable"))?,
        None => &empty,
    };
    let ctx = Context::new().with_check_ordered_functions(c.check_ordered);
    let result = Expression::parse(&c.expression).and_then(|e| e.evaluate(resource, &ctx));
    if c.invalid {
        return match result {
            Err(e) => {
                if std::env::var_os("FHIRPATH_SHOW_INVALID").is_some() {
                    println!("  invalid {} `{}`: {e}", c.name, c.expression.trim());
                }
                Ok(())
            }
            Ok(v) => Err(format!("expected an error, got {:?}", v.iter().map(render).collect::<Vec<_>>())),
        };
    }
    let mut got = result.map_err(|e| e.to_string())?;
    if c.predicate {
        got = vec![Value::Boolean(!got.is_empty())];
    }
    let fail = || {
        format!(
            "expected {:?}, got {:?}",
            c.outputs.iter().map(|(t, v)| format!("{}:{v}", t.as_deref().unwrap_or("?"))).collect::<Vec<_>>(),
            got.iter().map(render).collect::<Vec<_>>()
        )
    };
    if got.len() != c.outputs.len() {
        return Err(fail());
    }
    if c.ordered {
        if c.outputs.iter().zip(&got).all(|(e, g)| output_matches(e, g)) {
            return Ok(());
        }
    } else {
        let mut used = vec![false; got.len()];
        let all = c.outputs.iter().all(|e| {
            let hit = got.iter().enumerate().position(|(i, g)| !used[i] && output_matches(e, g));
            hit.map(|i| used[i] = true).is_some()
        });
        if all {
            return Ok(());
        }
    }
    Err(fail())
}

#[test]
fn fhirpath_r4_suite() {
    let dir = hale_fhir::shared_data::root();
    let suite = dir.join("fhirpath/tests-fhir-r4.xml");
    let Ok(xml) = std::fs::read_to_string(&suite) else {
        hale_fhir::shared_data::missing(&format!("the FHIRPath R4 suite ({})", suite.display()));
        return;
    };
    let cases = read_cases(&xml);
    let only = std::env::var("FHIRPATH_ONLY").ok();
    let verbose = std::env::var_os("FHIRPATH_VERBOSE").is_some();
    let mut inputs = Inputs { dir: dir.clone(), cache: HashMap::new() };
    let (mut passed, mut failed) = (0, 0);
    let mut skipped: HashMap<&str, usize> = HashMap::new();
    let mut failures = Vec::new();
    for c in &cases {
        if only.as_deref().is_some_and(|o| !c.name.contains(o)) {
            continue;
        }
        if let Some(reason) = skip_reason(c, &mut inputs) {
            *skipped.entry(reason).or_default() += 1;
            continue;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(c, &mut inputs)))
            .unwrap_or_else(|_| Err("PANIC".to_string()));
        match outcome {
            Ok(()) => passed += 1,
            Err(why) => {
                failed += 1;
                failures.push(format!("{} [{}] `{}`: {why}", c.name, c.group, c.expression.trim()));
            }
        }
    }
    let total_skipped: usize = skipped.values().sum();
    let mut reasons: Vec<String> = skipped.iter().map(|(r, n)| format!("{n} {r}")).collect();
    reasons.sort();
    println!(
        "FHIRPath R4 suite: {passed} passed, {failed} failed ({total_skipped} skipped{}{})",
        if reasons.is_empty() { "" } else { ": " },
        reasons.join(", ")
    );
    if verbose {
        for f in &failures {
            println!("  FAIL {f}");
        }
    }
    assert!(!failures.iter().any(|f| f.contains("PANIC")), "the engine panicked");
    if only.is_none() {
        assert!(passed >= PASS_FLOOR, "regression: {passed} passed, the floor is {PASS_FLOOR}");
    }
}

#[test]
fn xml_converter_matches_the_json_examples() {
    let dir = hale_fhir::shared_data::root().join("fhirpath/input");
    for stem in ["patient-example", "questionnaire-example"] {
        let (Ok(xml), Ok(json)) = (
            std::fs::read_to_string(dir.join(format!("{stem}.xml"))),
            std::fs::read_to_string(dir.join(format!("{stem}.json"))),
        ) else {
            hale_fhir::shared_data::missing(&format!("{stem} in the shared data"));
            continue;
        };
        let mut a = xml_to_json(&xml).unwrap();
        let mut b: Json = serde_json::from_str(&json).unwrap();
        for v in [&mut a, &mut b] {
            if let Some(t) = v.get_mut("text") {
                t.as_object_mut().map(|t| t.remove("div"));
            }
        }
        assert_eq!(a, b, "{stem}");
    }
}

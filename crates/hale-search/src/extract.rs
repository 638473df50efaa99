//! From the values a search parameter's FHIRPath expression selects to index rows
//! (<https://hl7.org/fhir/R4/search.html#table>: which data types each parameter type
//! indexes, and how).

pub use hale_fhir::ids::split_reference;
use serde_json::Value;

use crate::index::{DateIndex, IndexRows, NumberIndex, ReferenceIndex, StringIndex, TokenIndex, UriIndex};
use crate::parse::ParamType;
use crate::values::{DateRange, normalize};

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn strings<'a>(v: &'a Value, k: &str) -> Vec<&'a str> {
    match v.get(k) {
        Some(Value::String(x)) => vec![x.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// Adds the index rows of one selected value `v` of FHIR type `fhir_type` for
/// parameter `code` of type `ptype`.
pub fn add_value(rows: &mut IndexRows, code: &str, ptype: ParamType, fhir_type: &str, v: &Value) {
    add_value_on(rows, code, ptype, fhir_type, v, None);
}

/// [`add_value`] on a server whose FHIR base is `own_base` (`https://host/fhir`, no
/// trailing slash): a reference on that base (`https://host/fhir/Patient/1`) is indexed
/// as the relative reference it is (`Patient/1`), its text kept.
fn add_value_on(
    rows: &mut IndexRows,
    code: &str,
    ptype: ParamType,
    fhir_type: &str,
    v: &Value,
    own_base: Option<&str>,
) {
    match ptype {
        ParamType::String => add_string(rows, code, fhir_type, v),
        ParamType::Token => add_token(rows, code, fhir_type, v),
        ParamType::Date => add_date(rows, code, fhir_type, v),
        ParamType::Number => {
            if let Some(n) = number(v) {
                rows.numbers.push(NumberIndex { param: code.into(), value: n, system: None, code: None, unit: None });
            }
        }
        ParamType::Quantity => add_quantity(rows, code, fhir_type, v),
        ParamType::Reference => add_reference(rows, code, fhir_type, v, own_base),
        ParamType::Uri => {
            if let Some(u) = v.as_str() {
                rows.uris.push(UriIndex { param: code.into(), uri: u.into() });
            }
        }
        ParamType::Composite | ParamType::Special => {}
    }
}

fn push_string(rows: &mut IndexRows, code: &str, text: &str, parts: bool) {
    let norm = normalize(text);
    if norm.is_empty() {
        return;
    }
    if parts {
        // each later part of a name or address ("Carreno Quinones", "Smith-Jones") is a
        // row of its own, so a search matches any part (R4 search, string). Its `exact`
        // is empty: `:exact` and sorting go by the whole value only.
        for (i, c) in norm.char_indices() {
            if (c == ' ' || c == '-') && i + 1 < norm.len() {
                let rest = norm[i + 1..].trim_start_matches([' ', '-']);
                if !rest.is_empty() {
                    rows.strings.push(StringIndex { param: code.into(), norm: rest.to_string(), exact: String::new() });
                }
            }
        }
    }
    rows.strings.push(StringIndex { param: code.into(), norm, exact: text.into() });
}

/// The string parameters whose values are names or addresses (matched by any part).
const BY_PARTS: &[&str] = &["family", "given", "name", "address", "phonetic"];

fn add_string(rows: &mut IndexRows, code: &str, fhir_type: &str, v: &Value) {
    match fhir_type {
        "HumanName" => {
            for k in ["family", "given", "prefix", "suffix", "text"] {
                for part in strings(v, k) {
                    push_string(rows, code, part, true);
                }
            }
        }
        "Address" => {
            for k in ["line", "city", "district", "state", "postalCode", "country", "text"] {
                for part in strings(v, k) {
                    push_string(rows, code, part, true);
                }
            }
        }
        _ => {
            if let Some(t) = v.as_str() {
                push_string(rows, code, t, BY_PARTS.contains(&code));
            }
        }
    }
}

fn push_token(rows: &mut IndexRows, code: &str, system: Option<&str>, value: &str, text: Option<&str>) {
    rows.tokens.push(TokenIndex {
        param: code.into(),
        system: system.map(str::to_string),
        code: value.into(),
        text: text.map(normalize).filter(|t| !t.is_empty()),
    });
}

fn add_token(rows: &mut IndexRows, code: &str, fhir_type: &str, v: &Value) {
    match fhir_type {
        "Coding" => {
            if let Some(c) = s(v, "code") {
                push_token(rows, code, s(v, "system"), c, s(v, "display"));
            }
        }
        "CodeableConcept" => {
            let text = s(v, "text");
            let codings = v.get("coding").and_then(Value::as_array);
            let mut any = false;
            for c in codings.into_iter().flatten() {
                if let Some(cc) = s(c, "code") {
                    push_token(rows, code, s(c, "system"), cc, s(c, "display").or(text));
                    any = true;
                }
            }
            if !any && let Some(t) = text {
                push_token(rows, code, None, "", Some(t));
            }
        }
        "Identifier" => {
            if let Some(value) = s(v, "value") {
                let type_text = v.get("type").and_then(|t| s(t, "text"));
                push_token(rows, code, s(v, "system"), value, type_text);
                for c in v.get("type").and_then(|t| t.get("coding")).and_then(Value::as_array).into_iter().flatten() {
                    if let (Some(sys), Some(tc)) = (s(c, "system"), s(c, "code")) {
                        rows.tokens.push(TokenIndex {
                            param: format!("{code}:of-type"),
                            system: Some(sys.into()),
                            code: format!("{tc}|{value}"),
                            text: None,
                        });
                    }
                }
            }
        }
        "ContactPoint" => {
            if let Some(value) = s(v, "value") {
                push_token(rows, code, None, value, None);
            }
        }
        "boolean" => {
            if let Some(b) = v.as_bool() {
                push_token(rows, code, None, if b { "true" } else { "false" }, None);
            }
        }
        _ => {
            if let Some(t) = v.as_str() {
                push_token(rows, code, None, t, None);
            }
        }
    }
}

fn add_date(rows: &mut IndexRows, code: &str, fhir_type: &str, v: &Value) {
    let range = match fhir_type {
        "Period" => DateRange::period(s(v, "start"), s(v, "end")),
        "Timing" => {
            // only the outer limits matter (R4 search, date: "a schedule that specifies
            // every second day between 31-Jan 2013 and 24-Mar 2013 includes 1-Feb 2013"):
            // from the first event or the start of `repeat.boundsPeriod` to the last
            // event or its end
            let mut ranges: Vec<DateRange> = strings(v, "event").into_iter().filter_map(DateRange::parse).collect();
            if let Some(b) = v.get("repeat").and_then(|r| r.get("boundsPeriod")) {
                ranges.extend(DateRange::period(s(b, "start"), s(b, "end")));
            }
            let lo = ranges.iter().map(|r| r.lo).min();
            let hi = ranges.iter().map(|r| r.hi).max();
            lo.zip(hi).map(|(lo, hi)| DateRange { lo, hi })
        }
        _ => v.as_str().and_then(DateRange::parse),
    };
    if let Some(r) = range {
        rows.dates.push(DateIndex { param: code.into(), lo: r.lo, hi: r.hi });
    }
}

fn add_quantity(rows: &mut IndexRows, code: &str, fhir_type: &str, v: &Value) {
    let Some(value) = v.get("value").and_then(number) else {
        return;
    };
    let (system, c, unit) = if fhir_type == "Money" {
        (Some("urn:iso:std:iso:4217"), s(v, "currency"), None)
    } else {
        (s(v, "system"), s(v, "code"), s(v, "unit"))
    };
    rows.quantities.push(NumberIndex {
        param: code.into(),
        value,
        system: system.map(str::to_string),
        code: c.map(str::to_string),
        unit: unit.map(str::to_string),
    });
}

fn add_reference(rows: &mut IndexRows, code: &str, fhir_type: &str, v: &Value, own_base: Option<&str>) {
    let text = match fhir_type {
        "Reference" => {
            if let Some(ident) = v.get("identifier")
                && let Some(value) = s(ident, "value")
            {
                rows.tokens.push(TokenIndex {
                    param: format!("{code}:identifier"),
                    system: s(ident, "system").map(str::to_string),
                    code: value.into(),
                    text: None,
                });
            }
            s(v, "reference")
        }
        _ => v.as_str(),
    };
    let Some(text) = text else { return };
    if text.starts_with('#') {
        return;
    }
    // a reference on this server's own base is the relative one after the base
    let local = own_base.and_then(|b| text.strip_prefix(b)).and_then(|rest| rest.strip_prefix('/'));
    let relative = local.unwrap_or(text);
    let absolute = relative.contains("://") || relative.starts_with("urn:");
    let (target_type, target_id) = match split_reference(relative) {
        Some((t, id)) if !absolute => (Some(t.to_string()), Some(id.to_string())),
        _ => (None, None),
    };
    // the full text only when it says more than `Type/id` (absolute, versioned...)
    let url = match (&target_type, &target_id) {
        (Some(t), Some(i)) if text.len() == t.len() + 1 + i.len() => None,
        _ => Some(text.into()),
    };
    rows.references.push(ReferenceIndex { param: code.into(), target_type, target_id, url });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_index_every_part() {
        let mut r = IndexRows::default();
        add_value(
            &mut r,
            "name",
            ParamType::String,
            "HumanName",
            &json!({"family":"Chalmers","given":["Peter","James"]}),
        );
        let norms: Vec<&str> = r.strings.iter().map(|s| s.norm.as_str()).collect();
        assert_eq!(norms, ["chalmers", "peter", "james"]);
    }

    #[test]
    fn tokens_from_each_type() {
        let mut r = IndexRows::default();
        add_value(
            &mut r,
            "code",
            ParamType::Token,
            "CodeableConcept",
            &json!({"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"HR"}),
        );
        add_value(
            &mut r,
            "identifier",
            ParamType::Token,
            "Identifier",
            &json!({"system":"s","value":"v","type":{"coding":[{"system":"t","code":"MR"}]}}),
        );
        add_value(&mut r, "active", ParamType::Token, "boolean", &json!(true));
        add_value(&mut r, "gender", ParamType::Token, "code", &json!("female"));
        let t: Vec<(&str, Option<&str>, &str)> =
            r.tokens.iter().map(|t| (t.param.as_str(), t.system.as_deref(), t.code.as_str())).collect();
        assert_eq!(
            t,
            [
                ("code", Some("http://loinc.org"), "8867-4"),
                ("identifier", Some("s"), "v"),
                ("identifier:of-type", Some("t"), "MR|v"),
                ("active", None, "true"),
                ("gender", None, "female")
            ]
        );
        assert_eq!(r.tokens[0].text.as_deref(), Some("heart rate"));
    }

    #[test]
    fn dates_periods_and_references() {
        let mut r = IndexRows::default();
        add_value(&mut r, "date", ParamType::Date, "dateTime", &json!("2020-03"));
        add_value(&mut r, "date", ParamType::Date, "Period", &json!({"start":"2020-01-01"}));
        assert_eq!(r.dates.len(), 2);
        assert_eq!(r.dates[1].hi, i64::MAX);
        add_value(&mut r, "subject", ParamType::Reference, "Reference", &json!({"reference":"Patient/p1/_history/2"}));
        add_value(&mut r, "subject", ParamType::Reference, "Reference", &json!({"reference":"urn:uuid:1234"}));
        add_value(
            &mut r,
            "subject",
            ParamType::Reference,
            "Reference",
            &json!({"identifier":{"system":"s","value":"v"}}),
        );
        assert_eq!(r.references[0].target_type.as_deref(), Some("Patient"));
        assert_eq!(r.references[0].target_id.as_deref(), Some("p1"));
        assert_eq!(r.references[1].target_id, None);
        assert_eq!(r.tokens[0].param, "subject:identifier");
    }

    /// A Timing is searched by its outer limits: a `repeat.boundsPeriod` bounds it as
    /// its events do (a schedule with only a bounding period indexed nothing before).
    #[test]
    fn a_timing_is_indexed_by_its_events_and_bounding_period() {
        let range = |t: Value| {
            let mut r = IndexRows::default();
            add_value(&mut r, "date", ParamType::Date, "Timing", &t);
            r.dates.iter().map(|d| (d.lo, d.hi)).collect::<Vec<_>>()
        };
        let day = |d: &str| DateRange::parse(d).unwrap();
        let bounded = json!({"repeat":{"frequency":1,"period":2,"periodUnit":"d",
            "boundsPeriod":{"start":"2013-01-31","end":"2013-03-24"}}});
        assert_eq!(range(bounded), [(day("2013-01-31").lo, day("2013-03-24").hi)]);
        let open = json!({"repeat":{"boundsPeriod":{"start":"2013-01-31"}}});
        assert_eq!(range(open), [(day("2013-01-31").lo, i64::MAX)]);
        let both = json!({"event":["2013-01-15","2013-02-01"],"repeat":{"boundsPeriod":{"start":"2013-01-31","end":"2013-03-24"}}});
        assert_eq!(range(both), [(day("2013-01-15").lo, day("2013-03-24").hi)]);
        assert_eq!(range(json!({"event":["2013-02-01"]})), [(day("2013-02-01").lo, day("2013-02-01").hi)]);
        // a schedule with no dates has no outer limits
        assert!(range(json!({"repeat":{"frequency":1,"period":1,"periodUnit":"d"}})).is_empty());
    }

    #[test]
    fn references_on_the_servers_own_base_are_relative() {
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "https://ehr.example.org/fhir/Patient/p1"},
            "performer": [{"reference": "https://elsewhere.example/fhir/Practitioner/d1"}]});
        let refs = |rows: IndexRows| -> Vec<ReferenceIndex> {
            rows.references.into_iter().filter(|r| r.param == "subject" || r.param == "performer").collect()
        };
        let row = |param: &str, target: Option<(&str, &str)>, url: &str| ReferenceIndex {
            param: param.into(),
            target_type: target.map(|t| t.0.into()),
            target_id: target.map(|t| t.1.into()),
            url: Some(url.into()),
        };
        let on = refs(extract_on(&obs, Some("https://ehr.example.org/fhir/")));
        assert!(on.contains(&row("subject", Some(("Patient", "p1")), "https://ehr.example.org/fhir/Patient/p1")));
        // another server's reference stays a URL; without a base, every absolute one does
        assert!(on.contains(&row("performer", None, "https://elsewhere.example/fhir/Practitioner/d1")));
        assert!(refs(extract(&obs)).iter().all(|r| r.target_type.is_none()));
        // a base that is a prefix of another path is not that path's base
        let tricky = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "https://ehr.example.org/fhir2/Patient/p1"}});
        assert!(
            refs(extract_on(&tricky, Some("https://ehr.example.org/fhir"))).iter().all(|r| r.target_type.is_none())
        );
    }

    #[test]
    fn quantities_keep_units() {
        let mut r = IndexRows::default();
        add_value(
            &mut r,
            "value-quantity",
            ParamType::Quantity,
            "Quantity",
            &json!({"value":5.40,"system":"http://unitsofmeasure.org","code":"mmol/L","unit":"mmol/l"}),
        );
        assert_eq!(r.quantities[0].value, 5.4);
        assert_eq!(r.quantities[0].code.as_deref(), Some("mmol/L"));
    }
}

/// The compiled search parameters of each resource type.
struct Compiled {
    code: &'static str,
    param_type: ParamType,
    expr: crate::expr::Expr,
    /// For composite parameters: each component's type and relative expression.
    components: Vec<(ParamType, crate::expr::Expr)>,
}

/// The parts one component value `v` of FHIR type `fhir_type` contributes to a
/// composite parameter's values (one per row [`add_value`] makes of it).
pub fn composite_parts(ptype: ParamType, fhir_type: &str, v: &Value) -> Vec<crate::index::CompositePart> {
    use crate::index::CompositePart;
    let mut rows = IndexRows::default();
    add_value(&mut rows, "", ptype, fhir_type, v);
    let mut out = Vec::new();
    for t in rows.tokens.into_iter().filter(|t| t.param.is_empty()) {
        out.push(CompositePart { system: t.system, code: Some(t.code), ..Default::default() });
    }
    for s in rows.strings {
        out.push(CompositePart { code: Some(s.norm), ..Default::default() });
    }
    for d in rows.dates {
        out.push(CompositePart { lo: Some(d.lo), hi: Some(d.hi), ..Default::default() });
    }
    for n in rows.numbers {
        out.push(CompositePart { number: Some(n.value), ..Default::default() });
    }
    for q in rows.quantities {
        out.push(CompositePart { system: q.system, code: q.code, number: Some(q.value), ..Default::default() });
    }
    for r in rows.references {
        let code = match (r.target_type, r.target_id) {
            (Some(t), Some(i)) => Some(format!("{t}/{i}")),
            _ => r.url,
        };
        out.push(CompositePart { code, ..Default::default() });
    }
    for u in rows.uris {
        out.push(CompositePart { code: Some(u.uri), ..Default::default() });
    }
    out
}

/// Most value combinations one composite root may produce.
pub const MAX_COMBINATIONS: usize = 64;

/// Each combination of `combos` extended by each of `parts` (a composite's next
/// component), at most [`MAX_COMBINATIONS`] of them.
pub fn extend_combinations(
    combos: Vec<Vec<crate::index::CompositePart>>,
    parts: &[crate::index::CompositePart],
) -> Vec<Vec<crate::index::CompositePart>> {
    combos
        .into_iter()
        .flat_map(|c| {
            parts.iter().map(move |p| {
                let mut c = c.clone();
                c.push(p.clone());
                c
            })
        })
        .take(MAX_COMBINATIONS)
        .collect()
}

fn add_composite(rows: &mut IndexRows, p: &Compiled, resource: &Value) {
    for root in p.expr.evaluate(resource) {
        let mut combos: Vec<Vec<crate::index::CompositePart>> = vec![Vec::new()];
        for (t, e) in &p.components {
            let parts: Vec<crate::index::CompositePart> = e
                .evaluate_on(root, resource)
                .into_iter()
                .flat_map(|n| composite_parts(*t, n.fhir_type, n.value))
                .collect();
            if parts.is_empty() {
                combos.clear();
                break;
            }
            combos = extend_combinations(combos, &parts);
        }
        for parts in combos {
            rows.composites.push(crate::index::CompositeIndex { param: p.code.into(), parts });
        }
    }
}

/// The (type, compiled expression) of each component of a composite parameter; `None`
/// when a component's definition is unknown or its expression does not compile.
fn composite_components(
    p: &hale_fhir::definitions::SearchParamDef,
    by_url: &std::collections::HashMap<&str, &hale_fhir::definitions::SearchParamDef>,
) -> Option<Vec<(ParamType, crate::expr::Expr)>> {
    if p.component.is_empty() {
        return None;
    }
    p.component
        .iter()
        .map(|(url, expr)| {
            let def = by_url.get(url.as_str())?;
            let t = ParamType::of(def);
            if matches!(t, ParamType::Composite | ParamType::Special) {
                return None;
            }
            Some((t, crate::expr::compile(expr).ok()?))
        })
        .collect()
}

fn compiled() -> &'static std::collections::HashMap<String, Vec<Compiled>> {
    use std::sync::OnceLock;
    static C: OnceLock<std::collections::HashMap<String, Vec<Compiled>>> = OnceLock::new();
    C.get_or_init(|| {
        let defs = hale_fhir::Definitions::get();
        let types = defs.resource_types();
        let by_url: std::collections::HashMap<&str, &hale_fhir::definitions::SearchParamDef> =
            defs.search_parameters().iter().map(|p| (p.url.as_str(), p)).collect();
        let mut out: std::collections::HashMap<String, Vec<Compiled>> = std::collections::HashMap::new();
        for p in defs.search_parameters() {
            let param_type = ParamType::of(p);
            if matches!(param_type, ParamType::Special) || matches!(p.code.as_str(), "_id" | "_lastUpdated") {
                continue;
            }
            let Some(e) = p.expression.as_deref().and_then(|e| crate::expr::compile(e).ok()) else { continue };
            let components = if param_type == ParamType::Composite {
                let Some(c) = composite_components(p, &by_url) else { continue };
                c
            } else {
                Vec::new()
            };
            let bases: Vec<&str> = if p.base.iter().any(|b| b == "Resource" || b == "DomainResource") {
                types.clone()
            } else {
                p.base.iter().map(String::as_str).collect()
            };
            for b in bases {
                if let Some(for_b) = e.for_type(b) {
                    out.entry(b.to_string()).or_default().push(Compiled {
                        code: p.code.as_str(),
                        param_type,
                        expr: for_b,
                        components: components.clone(),
                    });
                }
            }
        }
        out
    })
}

/// The version of what [`extract`] writes. Bump it with any change that makes the rows
/// of a resource already stored differ (a parameter indexed anew, a value normalized
/// otherwise), and add the new digest to `INDEX_DIGESTS` in this file's tests (which
/// fail until then): a store an older Hale indexed then tells its operator to run
/// `hale reindex`.
pub const INDEX_VERSION: u32 = 2;

/// The index rows of every R4 search parameter of a resource.
pub fn extract(resource: &Value) -> IndexRows {
    extract_on(resource, None)
}

/// [`extract`] on a server whose FHIR base is `own_base` (`https://host/fhir`): the
/// references on that base are indexed as the relative references they are, so a search
/// for `subject=Patient/1` finds `"subject": {"reference": "https://host/fhir/Patient/1"}`
/// and the access rules hold it to that patient (R4 search, reference: a reference may
/// be relative or absolute).
pub fn extract_on(resource: &Value, own_base: Option<&str>) -> IndexRows {
    let own_base = own_base.map(|b| b.trim_end_matches('/')).filter(|b| b.contains("://"));
    let mut rows = IndexRows::default();
    let ty = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
    let Some(params) = compiled().get(ty) else { return rows };
    for p in params {
        if p.param_type == ParamType::Composite {
            add_composite(&mut rows, p, resource);
            continue;
        }
        let nodes = p.expr.evaluate(resource);
        if matches!(p.expr, crate::expr::Expr::PresentNotFalse(_)) {
            // the expression is a boolean for every resource: indexed either way, so
            // `deceased=false` finds a living patient with no `deceased` element
            push_token(&mut rows, p.code, None, if nodes.is_empty() { "false" } else { "true" }, None);
            continue;
        }
        for n in nodes {
            add_value_on(&mut rows, p.code, p.param_type, n.fhir_type, n.value, own_base);
        }
    }
    if ty == "Consent" {
        consent_rows(&mut rows, resource);
    }
    if ty == "Binary"
        && let Some(("Patient", id)) = resource["securityContext"]["reference"].as_str().and_then(split_reference)
    {
        // the record whose access rules govern the Binary (R4 http, "Binary")
        rows.references.push(crate::index::ReferenceIndex {
            param: hale_fhir::definitions::BINARY_PATIENT.to_string(),
            target_type: Some("Patient".into()),
            target_id: Some(id.to_string()),
            url: None,
        });
    }
    related_rows(&mut rows, ty);
    rows
}

/// Hale's own token rows of the organizations and practitioners an Encounter or a
/// CareTeam relates its patient to: under [`RELATED`], system the target type
/// (`Organization`, `Practitioner`), code its id, for an Encounter's `service-provider`
/// and a CareTeam's `participant`s ([`related_targets`]), unless its status says it
/// relates nobody ([`relates_nobody`]: entered in error, or a cancelled Encounter).
/// Token rows carry the patient key, so the access filter asks "does an Encounter of
/// patient X have organization O" with one probe of `search_token_patient`, however
/// many encounters X has.
fn related_rows(rows: &mut IndexRows, ty: &str) {
    if relates_nobody(ty, rows) {
        return;
    }
    let mut related: Vec<crate::index::TokenIndex> = Vec::new();
    for (t, id) in related_targets(ty, rows) {
        let row =
            crate::index::TokenIndex { param: RELATED.into(), system: Some(t.into()), code: id.into(), text: None };
        if !related.contains(&row) {
            related.push(row);
        }
    }
    rows.tokens.extend(related);
}

/// The organizations and practitioners (type, id) an Encounter (`service-provider`)
/// or a CareTeam (`participant`) of these index rows names, whatever its status: whom
/// it relates its patient to when its status lets it ([`relates_nobody`]).
pub fn related_targets<'a>(ty: &str, rows: &'a IndexRows) -> Vec<(&'a str, &'a str)> {
    let (param, targets): (&str, &[&str]) = match ty {
        "Encounter" => ("service-provider", &["Organization"]),
        "CareTeam" => ("participant", &["Organization", "Practitioner"]),
        _ => return Vec::new(),
    };
    rows.references
        .iter()
        .filter(|r| r.param == param)
        .filter_map(|r| Some((r.target_type.as_deref()?, r.target_id.as_deref()?)))
        .filter(|(t, _)| targets.contains(t))
        .collect()
}

/// Whether an Encounter or CareTeam with these index rows relates its patient to
/// nobody, by its `status` token: `entered-in-error` (it never happened), or for an
/// Encounter `cancelled` (it did not take place). The migrations that backfill
/// [`RELATED`] rows for older stores test the same statuses.
pub fn relates_nobody(ty: &str, rows: &IndexRows) -> bool {
    rows.tokens
        .iter()
        .any(|t| t.param == "status" && (t.code == "entered-in-error" || (ty == "Encounter" && t.code == "cancelled")))
}

/// The index parameter of Hale's own token rows naming an organization or practitioner
/// an Encounter or CareTeam relates its patient to (system: the type, code: the id).
pub const RELATED: &str = "_hale-related";

/// Hale's own index rows of an active Consent (no R4 search parameter says whether a
/// provision permits or denies): a reference row under [`CONSENT_PERMIT`] or
/// [`CONSENT_DENY`] for each Organization its top-level provision names as an actor.
/// The access filter reads them to share a record with another organization, or to
/// withhold it.
fn consent_rows(rows: &mut IndexRows, consent: &Value) {
    if consent.get("status").and_then(Value::as_str) != Some("active") {
        return;
    }
    let provision = &consent["provision"];
    let param = match provision.get("type").and_then(Value::as_str) {
        Some("permit") => CONSENT_PERMIT,
        Some("deny") => CONSENT_DENY,
        _ => return,
    };
    for actor in provision["actor"].as_array().into_iter().flatten() {
        if let Some(("Organization", id)) = actor["reference"]["reference"].as_str().and_then(split_reference) {
            rows.references.push(crate::index::ReferenceIndex {
                param: param.to_string(),
                target_type: Some("Organization".into()),
                target_id: Some(id.to_string()),
                url: None,
            });
        }
    }
}

/// The index parameter of an Organization an active Consent permits.
pub const CONSENT_PERMIT: &str = "_hale-consent-permit";
/// The index parameter of an Organization an active Consent denies.
pub const CONSENT_DENY: &str = "_hale-consent-deny";

#[cfg(test)]
mod extract_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_binary_is_indexed_under_the_patient_its_security_context_names() {
        let b =
            json!({"resourceType":"Binary","contentType":"text/plain","securityContext":{"reference":"Patient/p1"}});
        let rows = extract(&b);
        let r: Vec<_> = rows.references.iter().filter(|r| r.param == hale_fhir::definitions::BINARY_PATIENT).collect();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].target_type.as_deref(), r[0].target_id.as_deref()), (Some("Patient"), Some("p1")));
        let other = json!({"resourceType":"Binary","contentType":"text/plain","securityContext":{"reference":"DocumentReference/d1"}});
        assert!(extract(&other).references.iter().all(|r| r.param != hale_fhir::definitions::BINARY_PATIENT));
    }

    /// A name or address matches by any part: each later part is a row of its own,
    /// with an empty `exact` (so `:exact` and sorting see the whole value only).
    #[test]
    fn names_and_addresses_are_indexed_by_part() {
        let p = json!({"resourceType":"Patient","name":[{"family":"Carreño Quiñones","given":["Mary-Ann"]}],
            "address":[{"line":["12 Main  Street"]}]});
        let rows = extract(&p);
        let of = |param: &str| -> Vec<(String, String)> {
            let mut v: Vec<(String, String)> =
                rows.strings.iter().filter(|r| r.param == param).map(|r| (r.norm.clone(), r.exact.clone())).collect();
            v.sort();
            v
        };
        let pair = |n: &str, e: &str| (n.to_string(), e.to_string());
        assert_eq!(of("family"), [pair("carreno quinones", "Carreño Quiñones"), pair("quinones", "")]);
        assert_eq!(of("given"), [pair("ann", ""), pair("mary-ann", "Mary-Ann")]);
        let address = of("address");
        assert!(address.contains(&pair("main street", "")) && address.contains(&pair("street", "")), "{address:?}");
        assert!(address.contains(&pair("12 main street", "12 Main  Street")), "{address:?}");
        // other strings are whole values only
        let org = extract(&json!({"resourceType":"Organization","alias":["North Clinic"]}));
        assert_eq!(org.strings.iter().filter(|r| r.param == "name").count(), 2, "{:?}", org.strings);
        let obs = extract(&json!({"resourceType":"Device","modelNumber":"AB C"}));
        assert!(obs.strings.iter().all(|r| !r.exact.is_empty()), "{:?}", obs.strings);
    }

    /// `Patient.deceased.exists() and Patient.deceased != false` is a boolean for every
    /// patient (R4): one token, true or false, with or without the element.
    #[test]
    fn a_boolean_expression_is_indexed_for_every_resource() {
        let deceased = |r: Value| -> Vec<String> {
            extract(&r).tokens.into_iter().filter(|t| t.param == "deceased").map(|t| t.code).collect()
        };
        assert_eq!(deceased(json!({"resourceType":"Patient"})), ["false"]);
        assert_eq!(deceased(json!({"resourceType":"Patient","deceasedBoolean":false})), ["false"]);
        assert_eq!(deceased(json!({"resourceType":"Patient","deceasedBoolean":true})), ["true"]);
        assert_eq!(deceased(json!({"resourceType":"Patient","deceasedDateTime":"2020-01-02"})), ["true"]);
    }

    #[test]
    fn encounters_and_care_teams_index_whom_they_relate_their_patient_to() {
        let related = |r: &Value| -> Vec<(Option<String>, String)> {
            extract(r).tokens.into_iter().filter(|t| t.param == RELATED).map(|t| (t.system, t.code)).collect()
        };
        let enc = serde_json::json!({"resourceType":"Encounter","id":"e","status":"finished",
            "class":{"code":"AMB"},"subject":{"reference":"Patient/p"},
            "serviceProvider":{"reference":"Organization/o1"},
            "participant":[{"individual":{"reference":"Practitioner/x"}}]});
        assert_eq!(related(&enc), [(Some("Organization".to_string()), "o1".to_string())]);
        let ct = serde_json::json!({"resourceType":"CareTeam","id":"c","subject":{"reference":"Patient/p"},
            "participant":[{"member":{"reference":"Practitioner/d1"}},{"member":{"reference":"Organization/o2"}},
                {"member":{"reference":"RelatedPerson/r"}},{"member":{"reference":"Practitioner/d1"}}]});
        assert_eq!(
            related(&ct),
            [
                (Some("Practitioner".to_string()), "d1".to_string()),
                (Some("Organization".to_string()), "o2".to_string())
            ]
        );
        assert!(extract(&ct).patient_keys() == [Some("p")]);
        let obs = serde_json::json!({"resourceType":"Observation","status":"final","code":{"text":"x"},
            "performer":[{"reference":"Organization/o1"}]});
        assert!(related(&obs).is_empty());
        // an encounter that did not take place, or a record entered in error, relates nobody
        for (r, status) in [(&enc, "cancelled"), (&enc, "entered-in-error"), (&ct, "entered-in-error")] {
            let mut r = r.clone();
            r["status"] = json!(status);
            assert!(related(&r).is_empty(), "{status}");
            assert!(!related_targets(r["resourceType"].as_str().unwrap(), &extract(&r)).is_empty());
        }
        for (r, status) in [(&enc, "planned"), (&enc, "in-progress"), (&ct, "inactive"), (&ct, "proposed")] {
            let mut r = r.clone();
            r["status"] = json!(status);
            assert!(!related(&r).is_empty(), "{status}");
        }
    }

    #[test]
    fn an_observation_indexes_its_parameters() {
        let obs = json!({"resourceType":"Observation","id":"o","status":"final",
            "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
            "code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
            "subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-05-01T10:00:00Z",
            "valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"},
            "meta":{"tag":[{"system":"s","code":"t"}]}});
        let rows = extract(&obs);
        let has_token = |p: &str, c: &str| rows.tokens.iter().any(|t| t.param == p && t.code == c);
        assert!(has_token("code", "8867-4") && has_token("category", "vital-signs") && has_token("status", "final"));
        assert!(has_token("_tag", "t"));
        assert!(rows.references.iter().any(|r| r.param == "subject" && r.target_id.as_deref() == Some("p1")));
        assert!(rows.references.iter().any(|r| r.param == "patient" && r.target_type.as_deref() == Some("Patient")));
        assert!(rows.dates.iter().any(|d| d.param == "date"));
        assert!(rows.quantities.iter().any(|q| q.param == "value-quantity" && q.value == 72.0));
        let cvq = rows.composites.iter().find(|c| c.param == "code-value-quantity").unwrap();
        assert_eq!(cvq.parts[0].code.as_deref(), Some("8867-4"));
        assert_eq!(cvq.parts[1].number, Some(72.0));
    }

    #[test]
    fn an_active_consent_indexes_whom_it_permits_or_denies() {
        let c = |status: &str, ty: &str| {
            json!({"resourceType":"Consent","status":status,"scope":{"text":"patient-privacy"},"category":[{"text":"x"}],
                "patient":{"reference":"Patient/p1"},
                "provision":{"type":ty,"actor":[{"role":{"text":"x"},"reference":{"reference":"Organization/org-b"}},
                    {"role":{"text":"x"},"reference":{"reference":"Practitioner/x"}}]}})
        };
        let rows = extract(&c("active", "permit"));
        let orgs: Vec<_> = rows.references.iter().filter(|r| r.param == CONSENT_PERMIT).collect();
        assert_eq!(orgs.len(), 1);
        assert_eq!(orgs[0].target_id.as_deref(), Some("org-b"));
        assert!(extract(&c("active", "deny")).references.iter().any(|r| r.param == CONSENT_DENY));
        assert!(!extract(&c("inactive", "permit")).references.iter().any(|r| r.param.starts_with("_hale")));
    }

    #[test]
    fn every_composite_parameter_compiles() {
        let defs = hale_fhir::Definitions::get();
        let by_url = defs.search_parameters().iter().map(|p| (p.url.as_str(), p)).collect();
        let composites: Vec<_> =
            defs.search_parameters().iter().filter(|p| ParamType::of(p) == ParamType::Composite).collect();
        assert_eq!(composites.len(), 46);
        for p in composites {
            assert!(composite_components(p, &by_url).is_some(), "{}", p.url);
            assert!(crate::parse::component_types(p).is_some(), "{}", p.url);
        }
    }

    #[test]
    fn every_official_example_extracts() {
        let Some(files) = hale_fhir::shared_data::r4_examples() else { return };
        let mut rows = 0;
        for f in files {
            let Ok(text) = std::fs::read_to_string(f) else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
            rows += extract(&v).row_count();
        }
        assert!(rows > 50_000, "{rows}");
    }

    /// Each [`INDEX_VERSION`] with the digest of what [`extract`] writes for the R4
    /// examples; the last is this build's.
    const INDEX_DIGESTS: &[(u32, &str)] = &[(1, "cee1cae397a6fd7d"), (2, "d9048f85ca8a0256")];

    #[test]
    fn the_index_version_names_what_extract_writes() {
        let Some(files) = hale_fhir::shared_data::r4_examples() else { return };
        // FNV-1a over each example's name and rows, in name order
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for b in name.bytes().chain(format!("{:?}", extract(&v)).bytes()) {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        let digest = format!("{h:016x}");
        assert_eq!(
            INDEX_DIGESTS.last(),
            Some(&(INDEX_VERSION, digest.as_str())),
            "what extract writes changed: bump INDEX_VERSION and add ({}, \"{digest}\") to INDEX_DIGESTS",
            INDEX_VERSION + 1
        );
    }
}

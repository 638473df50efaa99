//! The audit of the index against the R4 search parameters: for every official R4
//! example (`fhir-r4-examples/` in the shared data, each file's top-level resource; a
//! Bundle's entries are examples of their own elsewhere) and every search parameter of
//! its type, the parameter's FHIRPath expression is evaluated by the general engine
//! (`hale-fhirpath`), each value it selects is turned into index rows by the same
//! `hale_search::extract::add_value` (with the FHIR type the engine gives it), and
//! those rows must be exactly the rows `hale_search::extract::extract` writes for that
//! parameter: a missing or an extra row is a failure. Composite parameters are checked
//! the same way through their components. Skips, with a message, when the shared data
//! is absent (and fails instead under `CI=true`).
//!
//! Not audited, each for a reason:
//! - `_id` and `_lastUpdated`: columns of the resource table, not index rows (extract
//!   writes none; the check that every row `extract` writes is audited holds it so);
//! - parameters of type `special` (R4 has one, Location `near`: a position, searched
//!   by distance, which the index does not hold) and those without an expression
//!   (`_text`, `_content`, `_query`: not values of the resource);
//! - Hale's own rows (`_hale-*`: Consent permits and denials, a Binary's patient,
//!   related organizations), which no R4 expression defines; they have unit tests in
//!   `extract.rs`.
//!
//! `resolve()`: a search expression's `x.where(resolve() is Patient)` means "the
//! references whose target is a Patient", which an index can only know from the
//! reference's text (`Patient/1`, `http://a/fhir/Patient/1`). The engine is given no
//! resolver, so it too decides by the reference's type (`reference_stub`). It does
//! resolve a contained (`#id`) target, which the index cannot type, but a local
//! reference gives no reference row either way (`add_value` skips it); only its
//! `identifier`, were one written beside it, would differ (no R4 example has one).
//!
//! Rows are compared as sets: a search clause asks whether some row matches, so a row
//! written twice changes no result, and FHIRPath's `|` is a set union (it removes
//! duplicates) where the index's concatenates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use hale_fhir::Definitions;
use hale_fhir::definitions::SearchParamDef;
use hale_fhirpath::{Context, Expression, Value as FpValue};
use hale_search::extract::{MAX_COMBINATIONS, add_value, composite_parts, extend_combinations, extract};
use hale_search::index::{CompositePart, IndexRows};
use hale_search::parse::ParamType;
use serde_json::Value as Json;

/// Hale's own index parameters, written by `extract` beside the R4 ones.
const HALE_PARAMS: &[&str] = &[
    hale_search::extract::CONSENT_PERMIT,
    hale_search::extract::CONSENT_DENY,
    hale_search::extract::RELATED,
    hale_fhir::definitions::BINARY_PATIENT,
];

/// The parameter a row of the index belongs to: `subject:identifier` and
/// `identifier:of-type` are rows of `subject` and `identifier`.
fn owner(param: &str) -> &str {
    param.split(':').next().unwrap_or(param)
}

/// Each row of `rows`, as text, by the parameter it belongs to.
fn rows_by_param(rows: &IndexRows) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut put = |param: &str, row: String| {
        out.entry(owner(param).to_string()).or_default().insert(row);
    };
    for r in &rows.tokens {
        put(&r.param, format!("token {r:?}"));
    }
    for r in &rows.strings {
        put(&r.param, format!("string {r:?}"));
    }
    for r in &rows.dates {
        put(&r.param, format!("date {r:?}"));
    }
    for r in &rows.numbers {
        put(&r.param, format!("number {r:?}"));
    }
    for r in &rows.quantities {
        put(&r.param, format!("quantity {r:?}"));
    }
    for r in &rows.references {
        put(&r.param, format!("reference {r:?}"));
    }
    for r in &rows.uris {
        put(&r.param, format!("uri {r:?}"));
    }
    for r in &rows.composites {
        put(&r.param, format!("composite {:?}", r.parts));
    }
    out
}

/// A value the engine selected, as (FHIR type, JSON) for `add_value`; `Ok(None)` for a
/// primitive element with extensions only (no value: nothing to index).
fn as_indexable(v: &FpValue<'_>) -> Result<Option<(String, Json)>, String> {
    match v {
        FpValue::Node(n) => match n.json {
            Some(j) => Ok(Some((n.fhir_type.unwrap_or("").to_string(), j.clone()))),
            None => Ok(None),
        },
        // Patient `deceased`: `deceased.exists() and deceased != false`
        FpValue::Boolean(b) => Ok(Some(("boolean".to_string(), Json::Bool(*b)))),
        other => Err(format!("a System value the index cannot hold: {other:?}")),
    }
}

/// Where an R4 search expression's text says other than its definition means, the text
/// meant, and why; the index (`hale_search::expr`) reads the R4 text as meant.
const ERRATA: &[(&str, &str, &str)] = &[(
    // Observation `code-value-date`'s value component. `DateTime` is FHIRPath's System
    // type, which a FHIR `dateTime` element is not (the R4 FHIRPath suite's testType12:
    // `Patient.active.is(Boolean).not()`), so read literally it selects nothing, ever;
    // the parameter is about `valueDateTime`, and R5 writes `value.ofType(dateTime)`.
    "value.as(DateTime)",
    "value.as(dateTime)",
    "R4 names the System type DateTime for the FHIR primitive dateTime",
)];

/// An expression with the [`ERRATA`] corrected.
fn as_meant(expr: &str) -> String {
    ERRATA.iter().fold(expr.to_string(), |e, (written, meant, _)| e.replace(written, meant))
}

/// Why a value of FHIR type `ty` selected for a parameter of type `ptype` can give no
/// index row, when it cannot; `None` when it should have given one.
fn why_nothing(ptype: ParamType, ty: &str, v: &Json) -> Option<&'static str> {
    let text = |k: &str| v.get(k).and_then(Json::as_str).filter(|t| !t.is_empty());
    let local = |t: Option<&str>| t.is_none_or(|t| t.starts_with('#'));
    let defs = Definitions::get();
    match (ptype, ty) {
        (ParamType::Reference, "Reference")
            if local(text("reference")) && v.get("identifier").and_then(|i| i.get("value")).is_none() =>
        {
            Some("a reference to a contained resource, or with a display only")
        }
        (ParamType::Reference, "canonical" | "uri") if local(v.as_str()) => Some("a canonical to a contained resource"),
        (ParamType::Reference, "Attachment") => Some("an Attachment (Consent.source[x]) is no reference"),
        (ParamType::Reference, t) if defs.is_concrete_resource(t) => {
            // Bundle `composition` and `message`: `Bundle.entry[0].resource` selects the
            // resource itself; searching into it needs chaining into the Bundle's own
            // content, which Hale does not do
            Some("a resource inside a Bundle, not a reference")
        }
        (ParamType::Token, "Identifier" | "ContactPoint") if text("value").is_none() => Some("no value"),
        (ParamType::Token, "CodeableConcept")
            if text("text").is_none()
                && v.get("coding").and_then(Json::as_array).into_iter().flatten().all(|c| c.get("code").is_none()) =>
        {
            Some("a concept without codes or text")
        }
        (ParamType::Date, "Timing")
            if v.get("event").is_none() && v.get("repeat").and_then(|r| r.get("boundsPeriod")).is_none() =>
        {
            Some("a Timing without events or a bounding period: no outer limits")
        }
        (ParamType::Date, "string") => Some("free text of a choice element (`scheduledString`)"),
        (ParamType::Quantity, "Range" | "SampledData") => Some("a Range or SampledData is not one quantity"),
        _ => None,
    }
}

fn short(v: &Json) -> String {
    v.to_string().chars().take(160).collect()
}

struct Audit<'d> {
    exprs: BTreeMap<&'d str, Expression>,
    /// Composite components: (component type, compiled relative expression) by url.
    components: BTreeMap<&'d str, Vec<(ParamType, Expression)>>,
    evaluations: usize,
    values: usize,
    /// Values that index nothing, counted by the reason they cannot.
    dropped: BTreeMap<&'static str, usize>,
    /// Values of the current example that index nothing for no known reason.
    unexplained: Vec<String>,
    rows: usize,
    /// Composite rows compared (of `rows`).
    composite_rows: usize,
    /// Composite roots with more value combinations than the index keeps.
    truncated: usize,
    mismatches: Vec<String>,
}

impl<'d> Audit<'d> {
    /// The rows the engine's evaluation of `sp` over `resource` gives, or why none.
    fn expected(&mut self, sp: &SearchParamDef, resource: &Json) -> Result<IndexRows, String> {
        // R4's search expressions apply the function `as(T)` to collections, meaning a
        // filter (as the operator `as` is)
        let ctx = Context::new().with_as_on_collections(true);
        let expr = &self.exprs[sp.url.as_str()];
        let ptype = ParamType::of(sp);
        let selected = expr.evaluate(resource, &ctx).map_err(|e| format!("{}: {e}", expr.source()))?;
        let mut rows = IndexRows::default();
        if ptype == ParamType::Composite {
            let components = &self.components[sp.url.as_str()];
            for root in selected {
                self.values += 1;
                // every combination of one part of each component, in component order,
                // at most MAX_COMBINATIONS per root (the index's bound)
                let mut combos: Vec<Vec<CompositePart>> = vec![Vec::new()];
                let mut full = 1usize;
                for (t, e) in components {
                    let mut parts = Vec::new();
                    for v in e.evaluate_on(resource, root.clone(), &ctx).map_err(|x| format!("{}: {x}", e.source()))? {
                        if let Some((ty, j)) = as_indexable(&v)? {
                            parts.extend(composite_parts(*t, &ty, &j));
                        }
                    }
                    full = full.saturating_mul(parts.len());
                    combos = extend_combinations(combos, &parts);
                }
                if full > MAX_COMBINATIONS {
                    self.truncated += 1;
                }
                for parts in combos {
                    rows.composites.push(hale_search::index::CompositeIndex { param: sp.code.clone(), parts });
                }
            }
            return Ok(rows);
        }
        for v in selected {
            let Some((ty, j)) = as_indexable(&v)? else { continue };
            self.values += 1;
            let before = rows.row_count();
            add_value(&mut rows, &sp.code, ptype, &ty, &j);
            if rows.row_count() == before {
                match why_nothing(ptype, &ty, &j) {
                    Some(reason) => *self.dropped.entry(reason).or_default() += 1,
                    None => self.unexplained.push(format!("{} ({}) {ty}: {}", sp.code, sp.kind, short(&j))),
                }
            }
        }
        Ok(rows)
    }
}

#[test]
fn the_index_holds_what_every_r4_search_expression_selects() {
    let Some(files) = hale_fhir::shared_data::r4_examples() else { return };
    let defs = Definitions::get();
    let by_url: BTreeMap<&str, &SearchParamDef> =
        defs.search_parameters().iter().map(|p| (p.url.as_str(), p)).collect();
    let audited = |sp: &SearchParamDef| {
        sp.expression.is_some()
            && ParamType::of(sp) != ParamType::Special
            && !matches!(sp.code.as_str(), "_id" | "_lastUpdated")
    };
    let mut audit = Audit {
        exprs: BTreeMap::new(),
        components: BTreeMap::new(),
        evaluations: 0,
        values: 0,
        dropped: BTreeMap::new(),
        unexplained: Vec::new(),
        rows: 0,
        composite_rows: 0,
        truncated: 0,
        mismatches: Vec::new(),
    };
    for sp in defs.search_parameters().iter().filter(|sp| audited(sp)) {
        let e = &as_meant(sp.expression.as_deref().unwrap_or_default());
        let parsed = Expression::parse(e).unwrap_or_else(|err| panic!("{}: {e}: {err}", sp.url));
        audit.exprs.insert(sp.url.as_str(), parsed);
        if ParamType::of(sp) == ParamType::Composite {
            let comps = sp
                .component
                .iter()
                .map(|(url, e)| {
                    let def = by_url.get(url.as_str()).unwrap_or_else(|| panic!("{}: component {url}", sp.url));
                    let e = &as_meant(e);
                    (ParamType::of(def), Expression::parse(e).unwrap_or_else(|err| panic!("{}: {e}: {err}", sp.url)))
                })
                .collect();
            audit.components.insert(sp.url.as_str(), comps);
        }
    }
    let files: Vec<PathBuf> = files.into_iter().filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    let mut examples = 0usize;
    for path in &files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let resource: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Some(rt) = resource.get("resourceType").and_then(Json::as_str) else { continue };
        examples += 1;
        let mut got = rows_by_param(&extract(&resource));
        for sp in defs.search_parameters_for(rt) {
            if !audited(sp) {
                continue;
            }
            audit.evaluations += 1;
            let expected = match audit.expected(sp, &resource) {
                Ok(rows) => rows_by_param(&rows).remove(&sp.code).unwrap_or_default(),
                Err(e) => {
                    audit.mismatches.push(format!("{name} {}: not evaluated: {e}", sp.code));
                    continue;
                }
            };
            for u in std::mem::take(&mut audit.unexplained) {
                audit.mismatches.push(format!("{name} {u}: a value that indexes nothing"));
            }
            let held = got.remove(&sp.code).unwrap_or_default();
            audit.rows += expected.len().max(held.len());
            if ParamType::of(sp) == ParamType::Composite {
                audit.composite_rows += expected.len().max(held.len());
            }
            let missing: Vec<&String> = expected.difference(&held).collect();
            let extra: Vec<&String> = held.difference(&expected).collect();
            if !missing.is_empty() || !extra.is_empty() {
                audit.mismatches.push(format!(
                    "{name} {} ({}): {}\n    missing {missing:?}\n    extra   {extra:?}",
                    sp.code,
                    sp.kind,
                    sp.expression.as_deref().unwrap_or_default()
                ));
            }
        }
        // whatever else extract wrote must be Hale's own
        for (param, rows) in got {
            if !HALE_PARAMS.contains(&param.as_str()) {
                audit.mismatches.push(format!("{name} {param}: rows of no audited parameter: {rows:?}"));
            }
        }
    }
    println!(
        "index audit: {} evaluations (search parameters x examples) over {examples} examples, {} values selected, \
         {} rows compared ({} of them composite; {} composite values beyond the index's {MAX_COMBINATIONS} \
         combinations), {} mismatches",
        audit.evaluations,
        audit.values,
        audit.rows,
        audit.composite_rows,
        audit.truncated,
        audit.mismatches.len()
    );
    println!("values that index nothing, by reason: {:#?}", audit.dropped);
    // what an audit that evaluated nothing would pass
    assert!(examples > 2000, "only {examples} examples read");
    assert!(audit.rows > 50_000 && audit.composite_rows > 300, "too few rows compared");
    assert!(audit.mismatches.is_empty(), "{} mismatches:\n{}", audit.mismatches.len(), audit.mismatches.join("\n"));
}

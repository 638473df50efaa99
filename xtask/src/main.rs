//! `cargo xtask gen-r4 [DIR]`: compiles the official FHIR R4 (4.0.1) definitions into
//! the compact table `crates/hale-fhir/src/generated/r4.json` that `hale-fhir` embeds,
//! the resources' invariants into `r4-invariants.json` beside it, and the core extension
//! definitions (`extension-*.json`: context, contextInvariant, value types, sub-extensions)
//! with the base type of every type into `r4-extensions.json`.
//!
//! DIR defaults to `../shared/data/fhir-r4-examples` (the official definition files as
//! JSON). The output is committed so that a plain `cargo build` works offline.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen-r4") => {
            let dir =
                args.get(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/data/fhir-r4-examples"));
            gen_r4(&dir)
        }
        _ => {
            eprintln!("usage: cargo xtask gen-r4 [DIR-WITH-R4-DEFINITIONS]");
            std::process::exit(2)
        }
    }
}

fn load(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn strip_version(url: &str) -> &str {
    url.split('|').next().unwrap_or(url)
}

fn gen_r4(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a directory of R4 definitions", dir.display());
    }
    let mut structure_defs: Vec<Value> = Vec::new();
    let mut code_systems: BTreeMap<String, Value> = BTreeMap::new();
    let mut value_sets: BTreeMap<String, Value> = BTreeMap::new();
    let types_bundle = load(&dir.join("profiles-types.json"))?;
    for e in types_bundle["entry"].as_array().context("profiles-types entries")? {
        structure_defs.push(e["resource"].clone());
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    for p in &names {
        let fname = p.file_name().unwrap().to_string_lossy().to_string();
        if fname.ends_with(".profile.json") {
            let v = load(p)?;
            if s(&v, "kind") == Some("resource") && s(&v, "derivation") != Some("constraint") {
                structure_defs.push(v);
            }
        } else if fname.starts_with("codesystem-") {
            let v = load(p)?;
            if let Some(url) = s(&v, "url") {
                code_systems.insert(url.to_string(), v);
            }
        } else if fname.starts_with("valueset-") {
            let v = load(p)?;
            if let Some(url) = s(&v, "url") {
                value_sets.insert(url.to_string(), v);
            }
        }
    }
    // Some value sets embed their code system (R4 "valueset-*.json" with a contained CS)
    // and many CodeSystems declare a valueSet of "all codes".
    let mut types = Map::new();
    let mut primitives = Map::new();
    let mut needed_vs: BTreeSet<String> = BTreeSet::new();
    for sd in &structure_defs {
        let kind = s(sd, "kind").unwrap_or("");
        let name = s(sd, "name").unwrap_or("");
        let ty = s(sd, "type").unwrap_or("");
        let url = s(sd, "url").unwrap_or("");
        if url != format!("http://hl7.org/fhir/StructureDefinition/{name}") {
            continue;
        }
        if !matches!(kind, "resource" | "complex-type" | "primitive-type") {
            continue;
        }
        let is_abstract = sd.get("abstract").and_then(Value::as_bool).unwrap_or(false);
        let elements = sd["snapshot"]["element"].as_array().context("snapshot")?;
        let root = elements[0]["path"].as_str().unwrap_or(ty).to_string();
        if kind == "primitive-type" {
            let mut regex = Value::Null;
            for el in elements {
                if el["path"].as_str() == Some(&format!("{root}.value")) {
                    for t in el["type"].as_array().into_iter().flatten() {
                        for x in t["extension"].as_array().into_iter().flatten() {
                            if s(x, "url") == Some("http://hl7.org/fhir/StructureDefinition/regex") {
                                regex = x["valueString"].clone();
                            }
                        }
                    }
                }
            }
            primitives.insert(name.to_string(), regex);
            continue;
        }
        // group children by their parent path
        let mut by_parent: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut parents_order: Vec<String> = vec![root.clone()];
        for el in elements.iter().skip(1) {
            let path = el["path"].as_str().context("path")?;
            let (parent, child) = path.rsplit_once('.').context("dotted path")?;
            // rename root (constraint types such as MoneyQuantity are rooted at Quantity)
            let parent = parent.to_string();
            let types_v: Vec<String> = if let Some(cr) = s(el, "contentReference") {
                vec![cr.trim_start_matches('#').to_string()]
            } else {
                el["type"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        let code = s(t, "code").unwrap_or("");
                        if let Some(sys) = code.strip_prefix("http://hl7.org/fhirpath/System.") {
                            let fhir_type = t["extension"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .find(|x| s(x, "url").is_some_and(|u| u.ends_with("structuredefinition-fhir-type")))
                                .and_then(|x| s(x, "valueUrl"))
                                .map(str::to_string);
                            let t = fhir_type.unwrap_or_else(|| sys.to_lowercase());
                            if kind == "resource" && path == format!("{root}.id") { "id".to_string() } else { t }
                        } else if code == "BackboneElement" || code == "Element" {
                            // a nested structure: its children are listed under its own path
                            path.to_string()
                        } else {
                            code.to_string()
                        }
                    })
                    .collect()
            };
            let min = el["min"].as_u64().unwrap_or(0);
            let max = match s(el, "max") {
                Some("*") => -1i64,
                Some(m) => m.parse::<i64>().unwrap_or(1),
                None => 1,
            };
            let mut binding = Value::Null;
            if types_v == ["code"]
                && el["binding"]["strength"].as_str() == Some("required")
                && let Some(vs) = el["binding"]["valueSet"].as_str()
            {
                let vs = strip_version(vs).to_string();
                needed_vs.insert(vs.clone());
                binding = Value::String(vs);
            }
            if !by_parent.contains_key(&parent) && parent != root {
                parents_order.push(parent.clone());
            }
            by_parent.entry(parent).or_default().push(json!([
                child,
                types_v,
                min,
                max,
                binding,
                el["isSummary"].as_bool().unwrap_or(false)
            ]));
        }
        let out_kind = match kind {
            "resource" => "resource",
            _ => "complex",
        };
        for parent in parents_order {
            let els = by_parent.remove(&parent).unwrap_or_default();
            let (k, a, tname) = if parent == root {
                (out_kind, is_abstract, name.to_string())
            } else {
                ("backbone", false, parent.clone())
            };
            // constraint types (MoneyQuantity...) keep their own name
            types.insert(tname, json!({"k": k, "a": a, "e": els}));
        }
    }
    // Element-typed elements whose children are not listed (leaf "Element") map to Element
    let known: BTreeSet<String> = types.keys().cloned().collect();
    for (_, t) in types.iter_mut() {
        for e in t["e"].as_array_mut().unwrap() {
            let tys = e[1].as_array_mut().unwrap();
            for ty in tys.iter_mut() {
                let n = ty.as_str().unwrap().to_string();
                if n.contains('.') && !known.contains(&n) {
                    *ty = Value::String("Element".into());
                }
            }
        }
    }
    // expand the value sets needed by required bindings, where the definitions suffice
    let mut vs_out = Map::new();
    let mut skipped = Vec::new();
    for vs in &needed_vs {
        match expand(vs, &value_sets, &code_systems, 0) {
            Some(codes) => {
                vs_out.insert(vs.clone(), json!(codes.into_iter().collect::<Vec<_>>()));
            }
            None => skipped.push(vs.clone()),
        }
    }
    // search parameters
    let sp_bundle = load(&dir.join("search-parameters.json"))?;
    let mut sps = Vec::new();
    for e in sp_bundle["entry"].as_array().context("search params")? {
        let r = &e["resource"];
        let comps: Vec<Value> = r["component"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!([s(c, "definition").unwrap_or(""), s(c, "expression").unwrap_or("")]))
            .collect();
        sps.push(json!({
            "url": s(r, "url"),
            "code": s(r, "code"),
            "base": r["base"],
            "type": s(r, "type"),
            "expression": r.get("expression").cloned().unwrap_or(Value::Null),
            "target": r.get("target").cloned().unwrap_or(json!([])),
            "component": comps,
        }));
    }
    // Patient compartment
    let comp = load(&dir.join("compartmentdefinition-patient.json"))?;
    let mut patient_compartment = Map::new();
    for r in comp["resource"].as_array().context("compartment resources")? {
        if let Some(params) = r.get("param") {
            patient_compartment.insert(s(r, "code").unwrap_or("").to_string(), params.clone());
        }
    }
    write_invariants(&structure_defs)?;
    write_extensions(&names, &structure_defs)?;
    let out = json!({
        "fhirVersion": "4.0.1",
        "types": types,
        "primitives": primitives,
        "valueSets": vs_out,
        "searchParameters": sps,
        "patientCompartment": patient_compartment,
    });
    let out_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/hale-fhir/src/generated/r4.json");
    std::fs::create_dir_all(out_path.parent().unwrap())?;
    std::fs::write(&out_path, serde_json::to_string(&out)?)?;
    println!(
        "wrote {}: {} types, {} primitives, {} value sets ({} required bindings left unchecked: {}), {} search parameters",
        out_path.display(),
        out["types"].as_object().unwrap().len(),
        out["primitives"].as_object().unwrap().len(),
        vs_out.len(),
        skipped.len(),
        skipped.join(" "),
        sps.len()
    );
    Ok(())
}

fn collect_concepts(concepts: &Value, out: &mut BTreeSet<String>) {
    for c in concepts.as_array().into_iter().flatten() {
        if let Some(code) = s(c, "code") {
            out.insert(code.to_string());
        }
        collect_concepts(&c["concept"], out);
    }
}

fn expand(
    url: &str,
    value_sets: &BTreeMap<String, Value>,
    code_systems: &BTreeMap<String, Value>,
    depth: u32,
) -> Option<BTreeSet<String>> {
    if depth > 5 {
        return None;
    }
    let vs = value_sets.get(url)?;
    let compose = vs.get("compose")?;
    if compose.get("exclude").is_some() {
        return None;
    }
    let mut codes = BTreeSet::new();
    for inc in compose["include"].as_array()? {
        if inc.get("filter").is_some() {
            return None;
        }
        for imported in inc["valueSet"].as_array().into_iter().flatten() {
            codes.extend(expand(strip_version(imported.as_str()?), value_sets, code_systems, depth + 1)?);
        }
        if let Some(concepts) = inc.get("concept") {
            collect_concepts(concepts, &mut codes);
        } else if let Some(system) = s(inc, "system") {
            let cs = code_systems.get(system)?;
            if s(cs, "content") != Some("complete") {
                return None;
            }
            collect_concepts(&cs["concept"], &mut codes);
        }
    }
    if codes.is_empty() { None } else { Some(codes) }
}

/// The invariants of severity error that R4 states on each resource and data type and
/// on their backbone elements, as `[element path, key, human, expression]` (the path is
/// also the name `hale-fhir` gives the element's type: `Observation`, `Patient.contact`,
/// `Period`, `Timing.repeat`); not those of Element that every element repeats
/// (`ele-1`), nor Extension's again on every type that has extensions.
fn write_invariants(structure_defs: &[Value]) -> Result<()> {
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for sd in structure_defs {
        let name = s(sd, "name").unwrap_or("");
        if !matches!(s(sd, "kind"), Some("resource" | "complex-type"))
            || s(sd, "derivation") == Some("constraint")
            || s(sd, "url") != Some(&format!("http://hl7.org/fhir/StructureDefinition/{name}"))
        {
            continue;
        }
        for el in sd["snapshot"]["element"].as_array().context("snapshot")? {
            let path = el["path"].as_str().context("path")?;
            for c in el["constraint"].as_array().into_iter().flatten() {
                let key = s(c, "key").unwrap_or("");
                let from = s(c, "source").unwrap_or("");
                let inherited = from.ends_with("/Element") || (from.ends_with("/Extension") && name != "Extension");
                let severity = s(c, "severity").unwrap_or("");
                if !matches!(severity, "error" | "warning")
                    || inherited
                    || !seen.insert((path.to_string(), key.to_string()))
                {
                    continue;
                }
                let (Some(human), Some(expr)) = (s(c, "human"), s(c, "expression")) else { continue };
                rows.push(json!([path, key, human, expr, severity]));
            }
        }
    }
    let out_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/hale-fhir/src/generated/r4-invariants.json");
    std::fs::write(&out_path, serde_json::to_string(&rows)?)?;
    println!("wrote {}: {} invariants", out_path.display(), rows.len());
    Ok(())
}

/// Contexts R4 uses its own core extensions in beyond those their definitions state, as
/// (url, the context R4 uses), added as the HL7 reference validator adds them
/// (`InstanceValidator.fixContexts` of org.hl7.fhir.validation): R4's own definitions put
/// `structuredefinition-fhir-type` and `regex` on `ElementDefinition.type` (the contexts
/// say `ElementDefinition.type.code`, and `Questionnaire.item` and `ElementDefinition`),
/// and `structuredefinition-normative-version` on ValueSets, CodeSystems,
/// OperationDefinitions and elements (the context says `StructureDefinition`); the
/// validator also opens the two CapabilityStatement extensions below to any element for
/// versions before R5. Where it replaces a context, Hale keeps R4's too.
const CONTEXT_ERRATA: &[(&str, &str)] = &[
    ("http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type", "ElementDefinition.type"),
    ("http://hl7.org/fhir/StructureDefinition/regex", "ElementDefinition.type"),
    ("http://hl7.org/fhir/StructureDefinition/structuredefinition-normative-version", "Element"),
    ("http://hl7.org/fhir/StructureDefinition/capabilitystatement-expectation", "Element"),
    ("http://hl7.org/fhir/StructureDefinition/capabilitystatement-prohibited", "Element"),
];

/// The core extensions of R4 (the `extension-*.json` StructureDefinitions) and the base
/// type of each type, as `{"extensions": [...], "bases": {type: base}}`. An extension is
/// `{"url", "context": [[type, expression]], "modifier", "value": [types], "required",
/// "ext": [...], "contextInvariant": [expressions]}`: `value` the types `Extension.value[x]`
/// allows (empty when its max is 0: a complex extension), `required` whether its min is 1,
/// `contextInvariant` (only where the definition has some: 13 in R4) the FHIRPath rules of
/// `StructureDefinition.contextInvariant` about where it may be used, `ext` the sub-extensions its open slicing of `Extension.extension` names
/// (`{"url" (relative), "min", "max" (-1 for *), "value", "ext"}`), or `null` when
/// `Extension.extension` has max 0 (a simple extension: no nested extensions).
fn write_extensions(names: &[PathBuf], structure_defs: &[Value]) -> Result<()> {
    let mut exts = Vec::new();
    for p in names {
        let fname = p.file_name().unwrap().to_string_lossy().to_string();
        if !fname.starts_with("extension-") {
            continue;
        }
        let sd = load(p)?;
        if s(&sd, "resourceType") != Some("StructureDefinition") || s(&sd, "type") != Some("Extension") {
            continue;
        }
        let url = s(&sd, "url").context("extension url")?;
        let els = sd["snapshot"]["element"].as_array().context("extension snapshot")?;
        let by_id: BTreeMap<&str, &Value> = els.iter().filter_map(|e| Some((s(e, "id")?, e))).collect();
        let root = by_id.get("Extension").context("extension root")?;
        let mut context: Vec<Value> = sd["context"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!([s(c, "type").unwrap_or(""), s(c, "expression").unwrap_or("")]))
            .collect();
        context.extend(CONTEXT_ERRATA.iter().filter(|e| e.0 == url).map(|e| json!(["element", e.1])));
        let mut def = extension_shape(&by_id, "Extension")?;
        let def = def.as_object_mut().context("shape")?;
        def.insert("url".into(), json!(url));
        def.insert("context".into(), json!(context));
        def.insert("modifier".into(), json!(root["isModifier"].as_bool().unwrap_or(false)));
        // R4 states each rule as a bare FHIRPath string (no key, no human text); written
        // only where there are some, so the other extensions' rows stay as they were
        let invariants: Vec<&str> =
            sd["contextInvariant"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if !invariants.is_empty() {
            def.insert("contextInvariant".into(), json!(invariants));
        }
        exts.push(Value::Object(def.clone()));
    }
    let mut bases = BTreeMap::new();
    for sd in structure_defs {
        let (Some(name), Some(base)) = (s(sd, "name"), s(sd, "baseDefinition")) else { continue };
        if s(sd, "derivation") == Some("specialization")
            && let Some(base) = base.strip_prefix("http://hl7.org/fhir/StructureDefinition/")
        {
            bases.insert(name.to_string(), base.to_string());
        }
    }
    let out_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/hale-fhir/src/generated/r4-extensions.json");
    std::fs::write(&out_path, serde_json::to_string(&json!({"extensions": exts, "bases": bases}))?)?;
    println!(
        "wrote {}: {} core extensions ({} with a contextInvariant), {} base types",
        out_path.display(),
        exts.len(),
        exts.iter().filter(|e| e.get("contextInvariant").is_some()).count(),
        bases.len()
    );
    Ok(())
}

/// What the snapshot says of the extension (or sub-extension slice) rooted at `id`: its
/// value types and its sub-extensions.
fn extension_shape(by_id: &BTreeMap<&str, &Value>, id: &str) -> Result<Value> {
    let value = by_id.get(format!("{id}.value[x]").as_str()).context("value[x]")?;
    let required = value["min"].as_u64().unwrap_or(0) > 0;
    let value_types: Vec<&str> = if s(value, "max") == Some("0") {
        Vec::new()
    } else {
        value["type"].as_array().into_iter().flatten().filter_map(|t| s(t, "code")).collect()
    };
    let ext = by_id.get(format!("{id}.extension").as_str()).context("extension")?;
    if s(&ext["slicing"], "rules") == Some("closed") {
        bail!("{id}.extension has closed slicing, which Hale does not read");
    }
    let mut slices = Vec::new();
    let prefix = format!("{id}.extension:");
    for (slice_id, el) in by_id {
        let Some(name) = slice_id.strip_prefix(&prefix) else { continue };
        if name.contains(['.', ':']) {
            continue;
        }
        let url = by_id
            .get(format!("{slice_id}.url").as_str())
            .and_then(|u| s(u, "fixedUri"))
            .with_context(|| format!("{slice_id}.url has no fixedUri"))?;
        let mut shape = extension_shape(by_id, slice_id)?;
        let o = shape.as_object_mut().context("shape")?;
        o.insert("url".into(), json!(url));
        o.insert("min".into(), json!(el["min"].as_u64().unwrap_or(0)));
        let max = match s(el, "max") {
            Some("*") | None => -1,
            Some(m) => m.parse::<i64>().unwrap_or(-1),
        };
        o.insert("max".into(), json!(max));
        slices.push(shape);
    }
    // slices name the sub-extensions even where the snapshot says max 0 (R4's
    // codesystem-history `revision`, whose date, id, author and notes it slices)
    let sub = if slices.is_empty() && s(ext, "max") == Some("0") { Value::Null } else { Value::Array(slices) };
    Ok(json!({"value": value_types, "required": required, "ext": sub}))
}

//! Every R4 SearchParameter expression, evaluated over the official R4 examples
//! (`fhir-r4-examples/` in the shared data): none may fail. Skips, with a message, when
//! the shared data is absent.

use std::path::PathBuf;

use hale_fhir::Definitions;
use hale_fhirpath::{Context, Expression};
use serde_json::Value as Json;

fn shared_data() -> PathBuf {
    match std::env::var_os("HALE_SHARED_DATA") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")),
    }
}

#[test]
fn search_parameter_expressions_evaluate_on_the_r4_examples() {
    let dir = shared_data().join("fhir-r4-examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "{} is absent: under CI=true a test fails rather than skips",
            dir.display()
        );
        println!("SKIPPED: no R4 examples at {} (set HALE_SHARED_DATA to the shared data folder)", dir.display());
        return;
    };
    let defs = Definitions::get();
    let mut compiled = std::collections::HashMap::new();
    for sp in defs.search_parameters() {
        if let Some(e) = &sp.expression {
            let parsed = Expression::parse(e).unwrap_or_else(|err| panic!("{}: {e}: {err}", sp.url));
            compiled.insert(sp.url.clone(), parsed);
        }
    }
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && name.contains("example")
        })
        .collect();
    files.sort();
    let ctx = Context::new();
    let (mut evaluations, mut values) = (0usize, 0usize);
    let mut failures = Vec::new();
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        let Ok(resource) = serde_json::from_str::<Json>(&text) else { continue };
        let Some(rt) = resource.get("resourceType").and_then(Json::as_str) else { continue };
        for sp in defs.search_parameters_for(rt) {
            let Some(expr) = compiled.get(&sp.url) else { continue };
            evaluations += 1;
            match expr.evaluate(&resource, &ctx) {
                Ok(v) => values += v.len(),
                Err(e) => failures.push(format!("{} {}: {}: {e}", path.display(), sp.code, expr.source())),
            }
        }
    }
    println!("search parameters: {evaluations} evaluations over {} examples, {values} values", files.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

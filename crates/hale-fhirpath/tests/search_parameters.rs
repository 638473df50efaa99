//! Every R4 SearchParameter expression, evaluated over the official R4 examples
//! (`fhir-r4-examples/` in the shared data): none may fail. Skips, with a message, when
//! the shared data is absent.

use std::path::PathBuf;

use hale_fhir::Definitions;
use hale_fhirpath::{Context, Expression};
use serde_json::Value as Json;

#[test]
fn search_parameter_expressions_evaluate_on_the_r4_examples() {
    let Some(files) = hale_fhir::shared_data::r4_examples() else { return };
    let defs = Definitions::get();
    let mut compiled = std::collections::HashMap::new();
    for sp in defs.search_parameters() {
        if let Some(e) = &sp.expression {
            let parsed = Expression::parse(e).unwrap_or_else(|err| panic!("{}: {e}: {err}", sp.url));
            compiled.insert(sp.url.clone(), parsed);
        }
    }
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && name.contains("example")
        })
        .collect();
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

//! The contextInvariants of the R4 core extensions (StructureDefinition.contextInvariant,
//! evaluated by `hale_fhirpath::invariants::check`), over every use of those extensions
//! in the official R4 examples: each must hold. Most of the examples that use them (the
//! `*-questionnaire.json` questionnaires the R4 build generated) are refused by Hale's
//! structural validation before any invariant is evaluated, so a write of the examples
//! reaches only one; this evaluates them all. Skips, with a message, when the shared
//! data is absent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hale_fhir::Definitions;
use serde_json::Value as Json;

/// Counts the extensions in `v` whose url is a key of `uses`.
fn count(v: &Json, uses: &mut BTreeMap<String, usize>) {
    match v {
        Json::Object(o) => {
            if let Some(n) = o.get("url").and_then(Json::as_str).and_then(|u| uses.get_mut(u)) {
                *n += 1;
            }
            o.values().for_each(|v| count(v, uses));
        }
        Json::Array(items) => items.iter().for_each(|v| count(v, uses)),
        _ => {}
    }
}

#[test]
fn the_r4_examples_keep_the_context_invariants_of_the_core_extensions() {
    let Some(files) = hale_fhir::shared_data::r4_examples() else { return };
    let mut uses: BTreeMap<String, usize> = Definitions::get()
        .extensions()
        .filter(|e| !e.context_invariants.is_empty())
        .map(|e| (e.url.clone(), 0))
        .collect();
    assert_eq!(uses.len(), 13);
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // not the definitions themselves (a StructureDefinition names its own url)
            name.ends_with(".json") && !name.starts_with("extension-") && !name.ends_with(".profile.json")
        })
        .collect();
    let mut broken = Vec::new();
    let mut resources = 0;
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        if !uses.keys().any(|u| text.contains(u.as_str())) {
            continue;
        }
        let Ok(resource) = serde_json::from_str::<Json>(&text) else { continue };
        resources += 1;
        count(&resource, &mut uses);
        for v in hale_fhirpath::invariants::check(&resource) {
            if uses.contains_key(&v.key) {
                broken.push(format!("{}: {} at {}: {}", path.display(), v.key, v.location, v.human));
            }
        }
    }
    println!("{resources} examples, uses: {uses:?}");
    assert!(broken.is_empty(), "{} broken:\n{}", broken.len(), broken.join("\n"));
    // the R4 examples use five of the thirteen, about 16,000 times
    assert!(uses.values().sum::<usize>() > 15_000, "{uses:?}");
    assert!(uses.values().filter(|n| **n > 0).count() >= 5, "{uses:?}");
}

//! What checking the R4 invariants costs a write: `hale_fhirpath::invariants::check` over
//! every official R4 example (../shared/data/fhir-r4-examples), several rounds, after a
//! warm-up round. Prints resources, rounds, and the mean and worst time per resource, of
//! all and of the clinical record's own types (conformance resources such as
//! StructureDefinition are large, rare in an EHR and costly).
//!
//!     cargo bench -p hale-fhirpath --bench invariants

use std::time::{Duration, Instant};

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fhir-r4-examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("SKIP: {} is absent", dir.display());
        return;
    };
    let resources: Vec<serde_json::Value> = entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| v.get("resourceType").is_some())
        .collect();
    let rounds = 5;
    let mut broken = 0;
    for r in &resources {
        broken += hale_fhirpath::invariants::check(r).len();
    }
    let clinical = [
        "Patient",
        "Observation",
        "Condition",
        "Encounter",
        "MedicationRequest",
        "AllergyIntolerance",
        "Immunization",
        "Procedure",
        "DiagnosticReport",
        "DocumentReference",
        "CarePlan",
        "ServiceRequest",
    ];
    let (mut total, mut worst) = (Duration::ZERO, (Duration::ZERO, String::new()));
    let (mut clinical_total, mut clinical_n) = (Duration::ZERO, 0usize);
    for _ in 0..rounds {
        for r in &resources {
            let t = Instant::now();
            std::hint::black_box(hale_fhirpath::invariants::check(r));
            let d = t.elapsed();
            total += d;
            let ty = r["resourceType"].as_str().unwrap_or("");
            if clinical.contains(&ty) {
                clinical_total += d;
                clinical_n += 1;
            }
            if d > worst.0 {
                worst = (d, format!("{ty} {}", r["id"].as_str().unwrap_or("")));
            }
        }
    }
    let n = (resources.len() * rounds) as f64;
    println!(
        "invariants: {} resources x {rounds} rounds: mean {:.1} us per resource, worst {:.1} us ({}); {broken} broken",
        resources.len(),
        total.as_secs_f64() * 1e6 / n,
        worst.0.as_secs_f64() * 1e6,
        worst.1
    );
    println!(
        "invariants of {} clinical resources ({}): mean {:.1} us per resource",
        clinical_n / rounds,
        clinical.join(", "),
        clinical_total.as_secs_f64() * 1e6 / clinical_n.max(1) as f64
    );
}

//! `hale synth` and `hale demo`: a synthetic population from `hale-synth`, written as
//! bundle files or NDJSON, or loaded straight into the store.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use hale_repository::Repository;
use serde_json::Value;

use crate::bulk::{ImportSummary, load_bundles, progress_bar};

/// The population's bundles with a label each: `0-shared`, then `patient-000001`...
fn labelled(cfg: &hale_synth::Config) -> impl Iterator<Item = (String, Value)> + use<> {
    hale_synth::population(cfg)
        .enumerate()
        .map(|(i, b)| (if i == 0 { "0-shared".to_string() } else { format!("patient-{i:06}") }, b))
}

/// Loads the population into the store behind `repo`.
pub async fn load(repo: &Repository, cfg: &hale_synth::Config, show_progress: bool) -> ImportSummary {
    let bar = progress_bar(show_progress);
    bar.set_message(format!("synthesizing {} patients", cfg.patients));
    let started = Instant::now();
    let mut summary = load_bundles(repo, labelled(cfg), &bar).await;
    bar.finish_and_clear();
    if let Err(e) = repo.optimize().await {
        summary.errors.push(format!("the store's statistics could not be refreshed: {e}"));
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary
}

/// Writes one bundle a file: `DIR/0-shared.json` (a batch, first in name order) and
/// `DIR/patient-NNNNNN.json` (a transaction each). Returns the number of files.
pub fn write_bundles(cfg: &hale_synth::Config, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut n = 0;
    for (label, bundle) in labelled(cfg) {
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{label}.json")))?);
        serde_json::to_writer(&mut f, &bundle)?;
        f.flush()?;
        n += 1;
    }
    Ok(n)
}

/// Writes the population as NDJSON, `DIR/Type.ndjson`, as bulk export does: every
/// resource gets the id of its `urn:uuid:` full URL and references point at `Type/id`.
/// Returns (type, count) pairs.
pub fn write_ndjson(cfg: &hale_synth::Config, dir: &Path) -> std::io::Result<Vec<(String, usize)>> {
    std::fs::create_dir_all(dir)?;
    let mut files: BTreeMap<String, (std::io::BufWriter<std::fs::File>, usize)> = BTreeMap::new();
    for (_, bundle) in labelled(cfg) {
        let mut entries: Vec<Value> = match bundle.get("entry") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let mut map = HashMap::new();
        for e in &mut entries {
            let full = e.get("fullUrl").and_then(Value::as_str).map(str::to_string);
            let r = &mut e["resource"];
            let ty = r.get("resourceType").and_then(Value::as_str).unwrap_or("").to_string();
            if let Some(uuid) = full.as_deref().and_then(|f| f.strip_prefix("urn:uuid:")) {
                r["id"] = Value::String(uuid.to_string());
                map.insert(format!("urn:uuid:{uuid}"), format!("{ty}/{uuid}"));
            }
        }
        for mut e in entries {
            let mut r = e["resource"].take();
            hale_repository::rewrite_references(&mut r, &map);
            let ty = r.get("resourceType").and_then(Value::as_str).unwrap_or("").to_string();
            let slot = match files.get_mut(&ty) {
                Some(s) => s,
                None => {
                    let f = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{ty}.ndjson")))?);
                    files.entry(ty.clone()).or_insert((f, 0))
                }
            };
            serde_json::to_writer(&mut slot.0, &r)?;
            slot.0.write_all(b"\n")?;
            slot.1 += 1;
        }
    }
    let mut counts = Vec::new();
    for (ty, (mut f, n)) in files {
        f.flush()?;
        counts.push((ty, n));
    }
    Ok(counts)
}

/// How many current Patient resources the store holds.
pub async fn patient_count(repo: &Repository) -> Result<u64, hale_repository::Error> {
    let ty = hale_repository::resource_type("Patient")?;
    let req = hale_search::parse::parse(&ty, &[("_summary".to_string(), "count".to_string())], false)
        .map_err(hale_repository::Error::invalid)?;
    Ok(repo.search(&req, 0, true).await?.total.unwrap_or(0))
}

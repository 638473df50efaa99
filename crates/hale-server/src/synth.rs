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

/// FHIR date or dateTime to an HL7 DTM (digits and the offset as written).
fn dtm(fhir: &str) -> String {
    let (main, zone) = match fhir.find(['Z', '+']).or_else(|| fhir.get(10..).and_then(|t| t.find('-')).map(|i| i + 10))
    {
        Some(i) => (&fhir[..i], &fhir[i..]),
        None => (fhir, ""),
    };
    let digits: String = main.split('.').next().unwrap_or("").chars().filter(char::is_ascii_digit).collect();
    let zone = match zone {
        "Z" => "+0000".to_string(),
        z => z.replace(':', ""),
    };
    format!("{digits}{zone}")
}

/// A synthetic interface feed from the population: for each patient an ADT^A04 (its
/// registration: PID from the Patient, PV1 with its first visit's number) and an
/// ORU^R01 for each laboratory report (OBR with the filler number, an OBX per result
/// with its units, reference range and flag). Returns (file name, message) pairs,
/// registrations first for each patient.
pub fn hl7_feed(cfg: &hale_synth::Config) -> Vec<(String, String)> {
    let seps = hale_hl7v2::Separators::default();
    let esc = |s: &str| hale_hl7v2::escape(s, &seps);
    let mut out = Vec::new();
    for (label, bundle) in labelled(cfg).skip(1) {
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        let by_url: HashMap<&str, &Value> =
            entries.iter().filter_map(|e| Some((e["fullUrl"].as_str()?, &e["resource"]))).collect();
        let Some(p) = entries.iter().map(|e| &e["resource"]).find(|r| r["resourceType"] == "Patient") else { continue };
        let mrn = p["identifier"][0]["value"].as_str().unwrap_or("").to_string();
        let name = &p["name"][0];
        let pid = format!(
            "PID|1||{}^^^SYNTH&2.16.840.1.113883.3.9999.1&ISO^MR||{}^{}||{}|{}|||{}^^{}^{}^{}",
            esc(&mrn),
            esc(name["family"].as_str().unwrap_or("")),
            esc(name["given"][0].as_str().unwrap_or("")),
            dtm(p["birthDate"].as_str().unwrap_or("")),
            match p["gender"].as_str() {
                Some("male") => "M",
                Some("female") => "F",
                _ => "U",
            },
            esc(p["address"][0]["line"][0].as_str().unwrap_or("")),
            esc(p["address"][0]["city"].as_str().unwrap_or("")),
            esc(p["address"][0]["state"].as_str().unwrap_or("")),
            esc(p["address"][0]["postalCode"].as_str().unwrap_or("")),
        );
        let msh = |ty: &str, control: &str, app: &str| {
            format!("MSH|^~\\&|{app}|SYNTH|HALE|CLINIC|20250101000000+0000||{ty}|{control}|P|2.5.1\r")
        };
        let first_visit = entries
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Encounter")
            .and_then(|e| e["fullUrl"].as_str())
            .and_then(|u| u.strip_prefix("urn:uuid:"))
            .map(|u| u.chars().take(12).collect::<String>())
            .unwrap_or_default();
        let mut pv1 = vec![String::new(); 20];
        pv1[0] = "PV1".into();
        pv1[1] = "1".into();
        pv1[2] = "O".into();
        pv1[19] = format!("{first_visit}^^^SYNTH&2.16.840.1.113883.3.9999.1&ISO^VN");
        out.push((
            format!("{label}-0-adt.hl7"),
            format!(
                "{}EVN|A04|20250101000000+0000\r{pid}\r{}\r",
                msh("ADT^A04^ADT_A01", &format!("{label}-ADT"), "SYNTHREG"),
                pv1.join("|")
            ),
        ));
        let mut n = 0;
        for e in &entries {
            let r = &e["resource"];
            if r["resourceType"] != "DiagnosticReport" || r["category"][0]["coding"][0]["code"] != "LAB" {
                continue;
            }
            n += 1;
            let filler = format!("{label}-{n}");
            let code = &r["code"]["coding"][0];
            let mut msg = msh("ORU^R01^ORU_R01", &format!("{label}-ORU-{n}"), "SYNTHLAB");
            msg.push_str(&pid);
            msg.push('\r');
            let mut obr = vec![String::new(); 26];
            obr[0] = "OBR".into();
            obr[1] = "1".into();
            obr[3] = format!("{}^SYNTHLAB", esc(&filler));
            obr[4] = format!(
                "{}^{}^LN",
                esc(code["code"].as_str().unwrap_or("")),
                esc(code["display"].as_str().unwrap_or(""))
            );
            obr[7] = dtm(r["effectiveDateTime"].as_str().unwrap_or(""));
            obr[22] = dtm(r["issued"].as_str().unwrap_or(""));
            obr[25] = "F".into();
            msg.push_str(&obr.join("|"));
            msg.push('\r');
            for (i, res) in r["result"].as_array().into_iter().flatten().enumerate() {
                let Some(o) = res["reference"].as_str().and_then(|u| by_url.get(u)) else { continue };
                let q = &o["valueQuantity"];
                let unit = q["unit"].as_str().unwrap_or("");
                let rr = &o["referenceRange"][0];
                let range = match (rr["low"]["value"].as_f64(), rr["high"]["value"].as_f64()) {
                    (Some(l), Some(h)) => format!("{l}-{h}"),
                    (Some(l), None) => format!(">{l}"),
                    (None, Some(h)) => format!("<{h}"),
                    _ => String::new(),
                };
                let c = &o["code"]["coding"][0];
                msg.push_str(&format!(
                    "OBX|{}|NM|{}^{}^LN||{}|{}^^UCUM|{}|{}|||F|||{}\r",
                    i + 1,
                    esc(c["code"].as_str().unwrap_or("")),
                    esc(c["display"].as_str().unwrap_or("")),
                    q["value"],
                    esc(unit),
                    esc(&range),
                    o["interpretation"][0]["coding"][0]["code"].as_str().unwrap_or(""),
                    dtm(o["effectiveDateTime"].as_str().unwrap_or("")),
                ));
            }
            out.push((format!("{label}-{n:03}-oru.hl7"), msg));
        }
    }
    out
}

/// Writes [`hl7_feed`] to `dir`, one message a file; returns how many.
pub fn write_hl7(cfg: &hale_synth::Config, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let feed = hl7_feed(cfg);
    for (name, msg) in &feed {
        std::fs::write(dir.join(name), msg)?;
    }
    Ok(feed.len())
}

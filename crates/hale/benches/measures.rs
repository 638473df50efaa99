//! Quality measures over a whole population on the embedded store: `hale synth`'s
//! population of `HALE_BENCH_PATIENTS` patients (default 5,000, the figure issue 16
//! names) loaded into a data directory, then the real binary answering
//! `Measure/[id]/$evaluate-measure` (a `summary` over the twelve months ending on the
//! population's reference date)
//! for each built-in measure, with a system token that sees every patient. Each measure
//! is evaluated `HALE_BENCH_REQUESTS` times (default 3) after one warm-up; the figures
//! are the time from request to the last byte, and the report's counts.
//!
//! Loading 5,000 patients takes several minutes. With `HALE_BENCH_DATA_DIR=DIR` the
//! population is loaded there once and reused by later runs (a marker file records the
//! population it holds).
//!
//! `cargo bench -p hale --bench measures`

use std::time::{Duration, Instant};

use serde_json::Value;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The count of one population of a summary MeasureReport.
fn count(report: &Value, code: &str) -> i64 {
    report["group"][0]["population"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["code"]["coding"][0]["code"] == code)
        .and_then(|p| p["count"].as_i64())
        .unwrap_or(-1)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("measures: bench");
        return;
    }
    let patients = env("HALE_BENCH_PATIENTS", 5000);
    let requests = env("HALE_BENCH_REQUESTS", 3).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("HALE_BENCH_DATA_DIR").map(std::path::PathBuf::from);
    let data = dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&data).unwrap();
    let marker = data.join(format!("bench-measures-{patients}.loaded"));
    if !marker.exists() {
        assert!(
            dir.is_none() || std::fs::read_dir(&data).unwrap().next().is_none(),
            "HALE_BENCH_DATA_DIR must be empty or hold a population this bench loaded"
        );
        rt.block_on(async {
            let cfg = hale_server::Config { data_dir: data.clone(), ..Default::default() };
            let repo = hale_server::system_repository(&cfg, "bench").await.unwrap();
            let pop = hale_synth::Config { patients, ..Default::default() };
            let t = Instant::now();
            let summary = hale_server::synth::load(&repo, &pop, false).await;
            assert!(summary.errors.is_empty(), "{:?}", summary.errors);
            println!(
                "loaded {patients} patients, {} resources in {:.1} s",
                summary.resources,
                t.elapsed().as_secs_f64()
            );
        });
        std::fs::write(&marker, b"").unwrap();
    } else {
        println!("reusing the population of {patients} patients in {}", data.display());
    }
    rt.block_on(async {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
        let server = hale_test_support::spawn_binary(exe, &data).await;
        let base = server.base.clone();
        // the twelve months up to the population's reference date (its "today")
        let today = hale_synth::Config::default().reference_date;
        let start = today.checked_sub_months(chrono::Months::new(12)).unwrap().succ_opt().unwrap();
        println!(
            "$evaluate-measure summary, {start}..{today}, {requests} after a warm-up (seconds: min / median / max)"
        );
        for m in hale_cds::measures::MEASURES {
            let url = format!("{base}/fhir/Measure/{}/$evaluate-measure?periodStart={start}&periodEnd={today}", m.id);
            let mut times: Vec<Duration> = Vec::new();
            let mut report = Value::Null;
            for i in 0..=requests {
                let t = Instant::now();
                let r = server.client.get(&url).send().await.unwrap();
                let status = r.status();
                let body = r.text().await.unwrap();
                let took = t.elapsed();
                assert_eq!(status, 200, "{}: {body}", m.id);
                if i > 0 {
                    times.push(took);
                }
                report = serde_json::from_str(&body).unwrap();
            }
            times.sort();
            println!(
                "  {:<36} {:>6.2} / {:>6.2} / {:>6.2}   initial {} excluded {} numerator {}",
                m.id,
                times[0].as_secs_f64(),
                times[times.len() / 2].as_secs_f64(),
                times[times.len() - 1].as_secs_f64(),
                count(&report, "initial-population"),
                count(&report, "denominator-exclusion"),
                count(&report, "numerator"),
            );
        }
    });
}

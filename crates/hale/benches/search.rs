//! Search on the embedded store with a few hundred thousand resources: Synthea-120
//! imported `HALE_BENCH_COPIES` times (default 3; each copy gets new ids), then the
//! chart's queries, each with a cold first run (a freshly opened store) and warm
//! repeats (p50/p99), the full paged download of one code, and `$everything`.
//!
//! `cargo bench -p hale --bench search` (needs ../shared/data/synthea-120); `-- sqlite` or
//! `-- postgres` runs one store only.

use std::time::{Duration, Instant};

use hale_fhir::{ResourceId, ResourceType};
use hale_repository::EverythingQuery;
use hale_repository::Repository;
use serde_json::Value;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run_query(repo: &Repository, ty: &str, q: &str, count: usize) -> usize {
    let ty = ResourceType::parse(ty).unwrap();
    let pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (a, b) = p.split_once('=').unwrap();
            (a.to_string(), b.replace("%7C", "|"))
        })
        .collect();
    let req = hale_search::parse::parse(&ty, &pairs, false).unwrap();
    let page = repo.search(&req, count, false).await.unwrap();
    page.entries.len() + page.included.len()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(dir) = hale_test_support::shared_data("synthea-120") else {
        println!("search: SKIPPED, ../shared/data/synthea-120 is absent");
        return;
    };
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |store: &str| only.is_empty() || only.iter().any(|o| o == store);
    let copies: usize = std::env::var("HALE_BENCH_COPIES").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let data = tempfile::tempdir().unwrap();
    let cfg = hale_server::Config { data_dir: data.path().to_path_buf(), ..Default::default() };
    if want("sqlite") {
        println!("== SQLite");
        run(&rt, &cfg, &dir, copies);
    }
    if want("postgres") && hale_test_support::postgres_url().is_some() {
        let db = rt.block_on(hale_test_support::TestDatabase::create());
        let pg = hale_server::Config { database_url: db.url.clone(), ..cfg.clone() };
        println!("== PostgreSQL");
        run(&rt, &pg, &dir, copies);
    } else if want("postgres") {
        println!("PostgreSQL SKIPPED: set HALE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/DB");
    }
}

fn run(rt: &tokio::runtime::Runtime, cfg: &hale_server::Config, dir: &std::path::Path, copies: usize) {
    let dir = dir.to_path_buf();
    let cfg = cfg.clone();
    let t = Instant::now();
    let mut total = 0;
    rt.block_on(async {
        let repo = hale_server::system_repository(&cfg, "bench").await.unwrap();
        for _ in 0..copies {
            let s = hale_server::bulk::import(&repo, std::slice::from_ref(&dir), false).await.unwrap();
            assert!(s.errors.is_empty(), "{:?}", s.errors);
            total += s.resources;
        }
    });
    println!("search: loaded {total} resources ({copies} copies of Synthea-120) in {:.0} s", t.elapsed().as_secs_f64());
    rt.block_on(async {
        let repo = hale_server::system_repository(&cfg, "bench").await.unwrap();
        // the patient with the most resources
        let pats = {
            let ty = ResourceType::parse("Patient").unwrap();
            let req = hale_search::parse::parse(&ty, &[], false).unwrap();
            repo.search(&req, 1000, false).await.unwrap().entries
        };
        let mut best = (0, String::new());
        // and Y, the one whose $everything is closest to 1,000 resources
        let mut near = (usize::MAX, 0, String::new());
        for p in &pats {
            let q = EverythingQuery { since: None, types: None, count: 5000, cursor: None, restriction: None };
            let n = repo.everything(&p.id, &q).await.unwrap().entries.len();
            if n > best.0 {
                best = (n, p.id.to_string());
            }
            if n.abs_diff(1000) < near.0 {
                near = (n.abs_diff(1000), n, p.id.to_string());
            }
        }
        let x = best.1.clone();
        println!("search: patient X = {x} with {} resources in $everything", best.0);
        let y = near.2.clone();
        println!("search: patient Y = {y} with {} resources in $everything", near.1);
        let queries: Vec<(&str, &str, String)> = vec![
            ("vitals", "Observation", format!("patient={x}&category=vital-signs&date=ge2020-01-01&_sort=-date")),
            ("conditions", "Condition", format!("patient={x}&clinical-status=active")),
            ("medications", "MedicationRequest", format!("patient={x}&status=active")),
            ("allergies", "AllergyIntolerance", format!("patient={x}")),
            ("name+birthdate", "Patient", "name=smi&birthdate=gt1960-01-01".to_string()),
            ("chain (2 levels)", "Observation", "subject:Patient.organization.name=hospital&_count=50".to_string()),
            ("_include", "Observation", format!("patient={x}&code=8867-4&_include=Observation:subject")),
            ("_revinclude", "Patient", format!("_id={x}&_revinclude=Condition:subject")),
            ("_has", "Patient", "_has:Condition:subject:code=44054006".to_string()),
            ("Y vitals", "Observation", format!("patient={y}&category=vital-signs&date=ge2020-01-01&_sort=-date")),
            ("Y vitals, all", "Observation", format!("patient={y}&category=vital-signs&_sort=-date")),
            ("Y conditions", "Condition", format!("patient={y}&clinical-status=active")),
            ("Y medications", "MedicationRequest", format!("patient={y}&status=active")),
            ("Y _include", "Observation", format!("patient={y}&code=8867-4&_include=Observation:subject")),
        ];
        println!("{:<18} {:>8} {:>9} {:>9} {:>9}", "query", "results", "cold ms", "p50 ms", "p99 ms");
        for (name, ty, q) in &queries {
            let cold_repo = hale_server::system_repository(&cfg, "bench").await.unwrap();
            let t = Instant::now();
            let n = run_query(&cold_repo, ty, q, 50).await;
            let cold = t.elapsed();
            let mut lat = Vec::new();
            for _ in 0..200 {
                let t = Instant::now();
                run_query(&repo, ty, q, 50).await;
                lat.push(t.elapsed());
            }
            lat.sort();
            println!(
                "{:<18} {:>8} {:>9.2} {:>9.2} {:>9.2}",
                name,
                n,
                cold.as_secs_f64() * 1000.0,
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
        }
        // $everything of X and of Y
        for (label, who, n) in [("$everything X", &x, best.0), ("$everything Y", &y, near.1)] {
            let mut lat = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                let q = EverythingQuery { since: None, types: None, count: 5000, cursor: None, restriction: None };
                repo.everything(&ResourceId::parse(who).unwrap(), &q).await.unwrap();
                lat.push(t.elapsed());
            }
            lat.sort();
            println!("{:<18} {:>8} {:>9} {:>9.2} {:>9.2}", label, n, "", pct(&lat, 0.5), pct(&lat, 0.99));
        }
        // one code: count and full paged download
        let ty = ResourceType::parse("Observation").unwrap();
        let pairs = vec![("code".to_string(), "http://loinc.org|8867-4".to_string())];
        let mut req = hale_search::parse::parse(&ty, &pairs, false).unwrap();
        let t = Instant::now();
        let count = repo.search(&req, 0, true).await.unwrap().total.unwrap_or(0);
        println!(
            "Observation?code=http://loinc.org|8867-4&_summary=count: {count} in {:.2} ms",
            t.elapsed().as_secs_f64() * 1000.0
        );
        let t = Instant::now();
        let mut n = 0;
        let mut bytes = 0;
        loop {
            let page = repo.search(&req, 1000, false).await.unwrap();
            n += page.entries.len();
            for e in &page.entries {
                let v: Value = serde_json::from_str(e.body.as_deref().unwrap()).unwrap();
                bytes += v.as_object().map(|o| o.len()).unwrap_or(0);
            }
            match page.next {
                Some(c) => req.cursor = Some(c),
                None => break,
            }
        }
        let _ = bytes;
        println!(
            "full paged download, store (1000 a page, each resource parsed): {n} resources at {:.0} resources/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
        // the same over HTTP: the server on loopback, the client following next links
        let http_cfg = hale_server::Config { listen: "127.0.0.1:0".into(), ..cfg.clone() };
        let server = hale_server::Server::bind(&http_cfg).await.unwrap();
        let base = format!("http://{}/fhir", server.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let client = hale_test_support::client_with_token(&hale_test_support::system_token(&http_cfg.data_dir));
        for pass in ["cold", "warm"] {
            let t = Instant::now();
            let (mut n, mut bytes) = (0usize, 0usize);
            let mut url = format!("{base}/Observation?code=http://loinc.org%7C8867-4&_count=1000");
            loop {
                let text = client.get(&url).send().await.unwrap().text().await.unwrap();
                bytes += text.len();
                let page: Value = serde_json::from_str(&text).unwrap();
                n += page["entry"].as_array().map_or(0, Vec::len);
                let next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next");
                match next {
                    Some(l) => url = l["url"].as_str().unwrap().to_string(),
                    None => break,
                }
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "full paged download, HTTP {pass} (1000 a page, client parses): {n} resources, {:.1} MB at {:.0} resources/s",
                bytes as f64 / 1e6,
                n as f64 / secs
            );
        }
        // the server's part alone: the client neither parses nor keeps the pages; five
        // passes (one download is only about 0.1 s), the median and the range
        let mut rates = Vec::new();
        let (mut n, mut bytes) = (0usize, 0usize);
        for _ in 0..5 {
            let t = Instant::now();
            (n, bytes) = (0, 0);
            let mut url = format!("{base}/Observation?code=http://loinc.org%7C8867-4&_count=1000");
            loop {
                let text = client.get(&url).send().await.unwrap().text().await.unwrap();
                bytes += text.len();
                n += text.matches("\"fullUrl\"").count();
                let marker = "\"relation\":\"next\",\"url\":\"";
                match text.find(marker) {
                    Some(i) => {
                        let rest = &text[i + marker.len()..];
                        url = rest[..rest.find('"').unwrap()].to_string();
                    }
                    None => break,
                }
            }
            rates.push(n as f64 / t.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "full paged download, HTTP warm (client only counts entries): {n} resources, {:.1} MB at {:.0} resources/s (median of 5; {:.0}-{:.0})",
            bytes as f64 / 1e6,
            rates[2],
            rates[0],
            rates[4]
        );
        let _ = stop.send(());
        let _ = serving.await;
    });
}

//! Create, read and search over HTTP on loopback against the real `hale` binary with the
//! embedded store: throughput and p50/p99 latency at 1 and 8 concurrent clients. Every
//! request carries an access token: a client's (`system/*.cruds`, no restriction), and
//! for the last scenario a clinician's, whose reads are held to their organization's
//! patients by the access filter.
//!
//! `cargo bench -p hale --bench http_crud` (set `HALE_BENCH_REQUESTS` to change the
//! number of requests per scenario; default 4000).

use std::time::{Duration, Instant};

use hale_test_support::spawn_binary;

fn patient(i: usize) -> String {
    format!(
        r#"{{"resourceType":"Patient","identifier":[{{"system":"http://bench.example/mrn","value":"{i}"}}],"active":true,"name":[{{"family":"Bench{i}","given":["Synthetic","Person"]}}],"telecom":[{{"system":"phone","value":"555-{i:04}","use":"home"}}],"gender":"{}","birthDate":"19{:02}-0{}-1{}","address":[{{"line":["{i} Main St"],"city":"Springfield","state":"IL","postalCode":"62701"}}],"managingOrganization":{{"reference":"Organization/bench-org"}}}}"#,
        if i.is_multiple_of(2) { "female" } else { "male" },
        i % 100,
        1 + i % 9,
        i % 10
    )
}

struct Outcome {
    latencies: Vec<Duration>,
    elapsed: Duration,
    ids: Vec<String>,
}

/// What a scenario's requests do.
#[derive(Clone, Copy, PartialEq)]
enum Op {
    Create,
    Read,
    /// `Patient?birthdate=...`: about nine patients share each birth date.
    Search,
}

async fn run(client: &reqwest::Client, base: &str, clients: usize, requests: usize, op: Op, ids: &[String]) -> Outcome {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base) = (client.clone(), base.to_string());
        let ids: Vec<String> = ids.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut made = Vec::new();
            let mut i = c;
            while i < requests {
                let t = Instant::now();
                if op == Op::Create {
                    let r = client
                        .post(format!("{base}/fhir/Patient"))
                        .header("content-type", "application/fhir+json")
                        .header("prefer", "return=minimal")
                        .body(patient(i))
                        .send()
                        .await
                        .expect("create");
                    assert_eq!(r.status(), 201);
                    let loc = r.headers()["location"].to_str().unwrap().to_string();
                    made.push(loc.split('/').rev().nth(2).unwrap().to_string());
                } else if op == Op::Search {
                    let url = format!("{base}/fhir/Patient?birthdate=19{:02}-0{}-1{}", i % 100, 1 + i % 9, i % 10);
                    let r = client.get(url).send().await.expect("search");
                    assert_eq!(r.status(), 200);
                    let b = r.bytes().await.expect("body");
                    assert!(b.len() > 500, "the search found patients");
                } else {
                    let id = &ids[(i * 7919) % ids.len()];
                    let r = client.get(format!("{base}/fhir/Patient/{id}")).send().await.expect("read");
                    assert_eq!(r.status(), 200);
                    r.bytes().await.expect("body");
                }
                lat.push(t.elapsed());
                i += clients;
            }
            (lat, made)
        }));
    }
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    for t in tasks {
        let (l, m) = t.await.expect("client task");
        latencies.extend(l);
        ids.extend(m);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Outcome { latencies, elapsed, ids }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let requests: usize = std::env::var("HALE_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
        let server = spawn_binary(exe, dir.path()).await;
        let client = hale_test_support::client_with_token(&hale_test_support::system_token(dir.path()));
        println!("http_crud: {requests} requests per scenario, hale {} on {}", env!("CARGO_PKG_VERSION"), server.base);
        println!("{:<8} {:>8} {:>9} {:>10} {:>9} {:>9}", "op", "clients", "requests", "req/s", "p50 ms", "p99 ms");
        let org = r#"{"resourceType":"Organization","id":"bench-org","name":"Bench clinic"}"#;
        let r = client
            .put(format!("{}/fhir/Organization/bench-org", server.base))
            .header("content-type", "application/fhir+json")
            .body(org)
            .send()
            .await
            .expect("organization");
        assert!(r.status().is_success());
        let mut all_ids = Vec::new();
        for clients in [1, 8] {
            let o = run(&client, &server.base, clients, requests, Op::Create, &[]).await;
            print_row("create", clients, &o);
            all_ids.extend(o.ids);
        }
        for clients in [1, 8] {
            let o = run(&client, &server.base, clients, requests, Op::Read, &all_ids).await;
            print_row("read", clients, &o);
        }
        for clients in [1, 8] {
            let o = run(&client, &server.base, clients, requests, Op::Search, &all_ids).await;
            print_row("search", clients, &o);
        }
        let g = hale_test_support::UserGrant {
            role: "clinician",
            organization: Some("bench-org"),
            scope: "user/*.rs",
            ..Default::default()
        };
        let clinician =
            hale_test_support::client_with_token(&hale_test_support::user_token(dir.path(), "dr.bench", &g));
        for clients in [1, 8] {
            let o = run(&clinician, &server.base, clients, requests, Op::Read, &all_ids).await;
            print_row("read-dr", clients, &o);
        }
        drop(server);
    });
}

fn print_row(op: &str, clients: usize, o: &Outcome) {
    println!(
        "{:<8} {:>8} {:>9} {:>10.0} {:>9.3} {:>9.3}",
        op,
        clients,
        o.latencies.len(),
        o.latencies.len() as f64 / o.elapsed.as_secs_f64(),
        pct(&o.latencies, 0.50),
        pct(&o.latencies, 0.99)
    );
}

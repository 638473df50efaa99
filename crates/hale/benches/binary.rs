//! Binary content over HTTP against the real `hale` binary with the embedded store: a
//! create of large content in its own media type, its read whole, a range of it, and
//! its read as FHIR JSON — the time of each and the server's peak memory (`VmHWM` from
//! `/proc/<pid>/status`) after each, against its memory before the first. The content is
//! sent and read a part at a time, so the create and the content reads should add
//! about nothing to the peak; the JSON read holds the content (base64) whole, as a JSON
//! answer must.
//!
//! `cargo bench -p hale --bench binary` (`HALE_BENCH_MIB` sets the content's size,
//! default 64; `HALE_BENCH_EXE` another `hale` binary to measure, e.g. an older build).

use std::time::Instant;

use hale_test_support::spawn_binary;

/// The server's resident memory now and at its peak, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::var("HALE_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let exe = std::env::var("HALE_BENCH_EXE").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hale").to_string());
    let dir = tempfile::tempdir().expect("temp dir");
    let server = spawn_binary(std::path::Path::new(&exe), dir.path()).await;
    let pid = server.child.id().expect("pid");
    let (client, base) = (&server.client, &server.base);
    let content: Vec<u8> =
        (0..mib * 1024 * 1024).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3]).collect();
    // warm: one small Binary written and read, so the baseline holds what any request does
    let r = client
        .put(format!("{base}/fhir/Binary/warm"))
        .header("content-type", "application/pdf")
        .body(vec![1u8; 1024])
        .send()
        .await
        .expect("warm");
    assert!(r.status().is_success());
    client.get(format!("{base}/fhir/Binary/warm")).send().await.expect("warm read").bytes().await.expect("body");
    let (rss, peak) = memory(pid);
    println!("binary: {mib} MiB of content; {exe}");
    println!("  before            rss {rss:7.1} MiB  peak {peak:7.1} MiB");
    let step = |name: &str, t: Instant, bytes: usize| {
        let (rss, peak) = memory(pid);
        let s = t.elapsed().as_secs_f64();
        println!(
            "  {name:<17} rss {rss:7.1} MiB  peak {peak:7.1} MiB  {:8.1} ms  {:7.1} MiB/s",
            s * 1000.0,
            bytes as f64 / 1024.0 / 1024.0 / s
        );
    };
    let t = Instant::now();
    let r = client
        .put(format!("{base}/fhir/Binary/scan"))
        .header("content-type", "application/pdf")
        .header("prefer", "return=minimal")
        .body(content.clone())
        .send()
        .await
        .expect("create");
    assert!(r.status().is_success(), "{}", r.status());
    step("create", t, content.len());
    let t = Instant::now();
    let got = client.get(format!("{base}/fhir/Binary/scan")).send().await.expect("read").bytes().await.expect("body");
    assert!(got == content, "the content read is the content sent");
    step("read (content)", t, content.len());
    let t = Instant::now();
    let r = client
        .get(format!("{base}/fhir/Binary/scan"))
        .header("range", "bytes=10000000-11048575")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 206);
    let n = r.bytes().await.expect("body").len();
    step("read (1 MiB range)", t, n);
    let t = Instant::now();
    let r = client
        .get(format!("{base}/fhir/Binary/scan"))
        .header("accept", "application/fhir+json")
        .send()
        .await
        .expect("json");
    let n = r.bytes().await.expect("body").len();
    step("read (FHIR JSON)", t, n);
}

//! HL7 v2 result messages over MLLP against the real `hale` binary: sustained
//! throughput and acknowledgement latency with every message persisted (its resources,
//! its Provenance and the raw message with its ACK committed in one transaction before
//! the ACK is sent). Each scenario sends `HALE_BENCH_MESSAGES` (default 3000) distinct
//! ORU^R01 messages (one report, three analytes, 500 patients) over 1, 4 and 8
//! connections, one message in flight per connection as MLLP requires; then checks that
//! every message's report is stored. Embedded SQLite by default; set
//! `HALE_BENCH_DATABASE_URL=postgres://...` (an empty database) for PostgreSQL.
//!
//! `cargo bench -p hale --bench hl7_mllp`

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn oru(control: &str, mrn: &str, filler: &str) -> String {
    format!(
        "MSH|^~\\&|LABSYS|NORTHLAB|HALE|CLINIC|20261201083000||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
         PID|1||{mrn}^^^NORTHLAB&2.16.840.1.113883.3.9999&ISO^MR||Tester^Pat||19800101|F\r\
         OBR|1||{filler}^NORTHLAB|24323-8^Comprehensive metabolic panel^LN|||20261201080000|||||||||||||||20261201083000|||F\r\
         OBX|1|NM|2823-3^Potassium^LN||4.1|mmol/L^^UCUM|3.5-5.1|N|||F\r\
         OBX|2|NM|2951-2^Sodium^LN||140|mmol/L^^UCUM|135-145|N|||F\r\
         OBX|3|NM|2345-7^Glucose^LN||98|mg/dL^^UCUM|70-99|N|||F\r"
    )
}

async fn exchange(stream: &mut TcpStream, message: &[u8], buf: &mut Vec<u8>) -> Vec<u8> {
    let mut framed = vec![0x0b];
    framed.extend_from_slice(message);
    framed.extend_from_slice(&[0x1c, 0x0d]);
    stream.write_all(&framed).await.unwrap();
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
            return buf[1..end].to_vec();
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection ended");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let messages: usize = std::env::var("HALE_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let mut args = vec![
        "serve".to_string(),
        "--data-dir".to_string(),
        dir.path().display().to_string(),
        "--mllp".to_string(),
        "127.0.0.1:0".to_string(),
    ];
    let pg = std::env::var("HALE_BENCH_DATABASE_URL").ok().filter(|u| !u.is_empty());
    if let Some(url) = &pg {
        args.extend(["--database".to_string(), url.clone()]);
    }
    let server = hale_test_support::spawn_binary_env(exe, &args, &[]).await;
    let addr = server.banner.iter().find_map(|l| l.strip_prefix("Hale MLLP listening on ")).unwrap().trim().to_string();
    println!(
        "HL7 v2 ORU^R01 over MLLP, {} store, {messages} messages a scenario (3 OBX each), every message persisted",
        if pg.is_some() { "PostgreSQL" } else { "embedded SQLite" }
    );
    println!("{:<14} {:>10} {:>10} {:>10} {:>10}", "connections", "msg/s", "p50 ms", "p99 ms", "max ms");
    let mut sent = 0usize;
    for connections in [1usize, 4, 8] {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..connections {
            let addr = addr.clone();
            let first = sent;
            tasks.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(&addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let mut buf = Vec::new();
                let mut lat = Vec::new();
                for i in (c..messages).step_by(connections) {
                    let n = first + i;
                    let m = oru(&format!("B{n}"), &format!("BMRN-{}", n % 500), &format!("BFIL-{n}"));
                    let t = Instant::now();
                    let ack = exchange(&mut stream, m.as_bytes(), &mut buf).await;
                    lat.push(t.elapsed());
                    assert!(ack.windows(7).any(|w| w == b"MSA|AA|"), "{}", String::from_utf8_lossy(&ack));
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed();
        sent += messages;
        lat.sort();
        println!(
            "{connections:<14} {:>10.0} {:>10.2} {:>10.2} {:>10.2}",
            messages as f64 / elapsed.as_secs_f64(),
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            pct(&lat, 1.0)
        );
    }
    let r: serde_json::Value = server
        .client
        .get(format!("{}/fhir/DiagnosticReport?_summary=count", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["total"].as_u64(), Some(sent as u64), "every acknowledged message is stored");
    println!("checked: {sent} reports stored, one per message");
}
